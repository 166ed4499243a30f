"""The one registry of domain pipelines: CLI name -> "module:Class".

Adding a domain is one folder under pipelines/ (config.py, model.py, pipeline.py) and one line here;
nothing in common/ changes. Classes are imported only when a command needs them, so `deepsuite list`
and `--help` stay fast.
"""

REGISTRY: dict[str, str] = {
    "image-classification": "pipelines.image_classification.pipeline:ImageClassificationPipeline",
    "medical-imaging": "pipelines.medical_imaging.pipeline:MedicalImagingPipeline",
    "image-denoising": "pipelines.image_denoising.pipeline:ImageDenoisingPipeline",
    "sentiment-analysis": "pipelines.sentiment_analysis.pipeline:SentimentAnalysisPipeline",
    "text-generation": "pipelines.text_generation.pipeline:TextGenerationPipeline",
    "recommendation": "pipelines.recommendation.pipeline:RecommendationPipeline",
}
