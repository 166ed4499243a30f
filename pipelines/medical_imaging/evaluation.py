"""Evaluation of the medical CNN: metrics at the validation-chosen threshold, curves, Grad-CAM grids.

For a binary task the decision threshold is chosen on the validation split (Youden's J, or a target
sensitivity/specificity) and then applied unchanged to test, so the reported sensitivity and
specificity are those of a fixed operating point, as in a deployed device. The threshold travels
with the exported model (`decision` in deepsuite.json) so `deepsuite predict` uses the same one.

The out-of-distribution detector (ood.py) is fitted on the training images' features, its threshold chosen
on validation; the share of test images it flags is reported (`ood_flagged_fraction`), and the expected
domain (config `domain`) and the detector's threshold go into the export's metadata for predict.

A streamed folder's splits (`ImageFiles`) are predicted through in-order batches decoded by worker threads
(`image_batches.prediction_input`), and the detector's features and the Grad-CAM cases decode only the
images they need, a chunk at a time; arrays are predicted as they always were.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepsuite.common import metrics_binary as mb
from deepsuite.common import reports
from deepsuite.common.metrics import classification_metrics
from deepsuite.common.pipeline import Evaluation, Splits, to_numpy
from deepsuite.pipelines.medical_imaging import figures, ood
from deepsuite.pipelines.medical_imaging.config import DomainConfig, EvaluationConfig, MedicalImagingConfig
from deepsuite.pipelines.medical_imaging.contract import Decision, ExpectedDomain, OodCheck

STREAMED_BATCH = 128   # a streamed split is predicted in batches of this many images (arrays: 512)


def evaluate(model, splits: Splits, config: MedicalImagingConfig) -> Evaluation:
    """Binary: metrics at the threshold chosen on validation, which goes into the export's metadata;
    multi-class: argmax metrics and one-vs-rest ROC-AUC."""
    meta = splits.metadata
    val_probs = predict(model, splits.val.x, config.data.stream_workers)
    test_probs = predict(model, splits.test.x, config.data.stream_workers)
    if len(meta.class_names) == 2:
        evaluation, decision = evaluate_binary(model, splits, val_probs, test_probs, config.evaluation)
        meta.decision = decision  # exported in deepsuite.json: predict applies the same threshold
    else:
        evaluation = evaluate_multiclass(model, splits, test_probs, config.evaluation)
    evaluation.notes.insert(0, f"splits: {meta.split}")
    meta.domain = ExpectedDomain(modalities=config.domain.modalities, body_parts=config.domain.body_parts,
                                 policy=config.domain.policy)
    check_ood(model, splits, config.domain, evaluation, config.data.stream_workers)
    if meta.patient_split and meta.patient_split.known:
        evaluation.metrics["split_shared_patients"] = float(meta.patient_split.shared_patients)
    return evaluation


def predict(model, images, workers: int | None = None) -> np.ndarray:
    """Class probabilities of arrays (batches of 512) or of a streamed split's files (in-order batches)."""
    from deepsuite.common.image_batches import prediction_input  # Keras is loaded by now

    x, options = prediction_input(images, 512, workers, streamed_batch=STREAMED_BATCH)
    return to_numpy(model.predict(x, verbose=0, **options))


def check_ood(model, splits: Splits, config: DomainConfig, evaluation: Evaluation, workers: int | None = None) -> None:
    """Fit the out-of-distribution detector on train, choose its threshold on validation, report test's
    flagged share; the detector rides on the metadata to `export_extras`, which writes it."""
    meta, names = splits.metadata, splits.metadata.class_names
    features = ood.feature_extractor(model, workers)
    detector = ood.Detector.fit(features(splits.train.x), np.asarray(splits.train.y))
    y_val, y_test = np.asarray(splits.val.y), np.asarray(splits.test.y)
    val_scores, test_scores = detector.score(features(splits.val.x)), detector.score(features(splits.test.x))
    threshold = ood.class_balanced_threshold(val_scores, y_val, config.ood_rate)
    val_flagged, test_flagged = float(np.mean(val_scores > threshold)), float(np.mean(test_scores > threshold))
    meta.ood = OodCheck(
        method=f"Mahalanobis distance of the square-rooted pooled last feature map ({len(detector.means[0])} "
               "features) to the nearest class's Gaussian (own Ledoit-Wolf shrunk covariance) fitted on train",
        file=ood.OOD_FILE, threshold=threshold, rate=config.ood_rate,
        chosen_on=f"validation: the largest of the classes' conformal ({1 - config.ood_rate:.0%}) quantiles",
        val_flagged=val_flagged, test_flagged=test_flagged)
    meta._detector = detector
    evaluation.metrics |= {"ood_flagged_fraction": test_flagged, "ood_threshold": threshold,
                           "val_ood_flagged_fraction": val_flagged}
    evaluation.notes.append(
        f"out-of-distribution score (Mahalanobis, feature space): threshold {threshold:.1f} chosen on validation so "
        f"that at most {config.ood_rate:.0%} of each class is flagged; flags {val_flagged:.1%} of validation and "
        f"{test_flagged:.1%} of test images")
    rows = [(split, names[k], scores[y == k]) for split, scores, y in
            (("validation", val_scores, y_val), ("test", test_scores, y_test)) for k in range(len(names))]
    evaluation.tables["ood.csv"] = "split,class,images,flagged,flagged_fraction,median_score,threshold\n" + "".join(
        f"{split},\"{name}\",{len(s)},{int(np.sum(s > threshold))},{np.mean(s > threshold) if len(s) else 0.0:.4f},"
        f"{np.median(s) if len(s) else float('nan'):.2f},{threshold:.4f}\n" for split, name, s in rows)


def write_extras(splits: Splits, export_dir) -> None:
    """The fitted detector's statistics beside model.keras (predict reads them by metadata.ood.file)."""
    meta = splits.metadata
    if meta.ood is not None and meta._detector is not None:
        meta._detector.save(Path(export_dir) / meta.ood.file)


def evaluate_binary(model, splits: Splits, val_probs: np.ndarray, test_probs: np.ndarray,
                    config: EvaluationConfig) -> tuple[Evaluation, Decision]:
    names, pos = splits.metadata.class_names, splits.metadata.positive_index
    positive = names[pos]
    y_val, s_val = (splits.val.y == pos).astype(int), val_probs[:, pos]
    y_test, s_test = (splits.test.y == pos).astype(int), test_probs[:, pos]
    threshold = mb.choose_threshold(y_val, s_val, config.threshold_policy, config.threshold_target)
    at = mb.metrics_at(y_test, s_test, threshold)
    val_at = mb.metrics_at(y_val, s_val, threshold)
    metrics = {
        "roc_auc": mb.roc_auc(y_test, s_test),
        "pr_auc": mb.average_precision(y_test, s_test),
        **{k: at[k] for k in ("accuracy", "sensitivity", "specificity", "precision", "npv", "f1", "balanced_accuracy")},
        "threshold": threshold,
        "brier": mb.brier_score(y_test, s_test),
        "ece": mb.calibration_bins(y_test, s_test, config.calibration_bins)["ece"],
        "log_loss": mb.log_loss(y_test, s_test),
        "val_roc_auc": mb.roc_auc(y_val, s_val),
        "val_log_loss": mb.log_loss(y_val, s_val),
        "val_sensitivity": val_at["sensitivity"],
        "val_specificity": val_at["specificity"],
        "true_positives": at["tp"], "false_negatives": at["fn"], "true_negatives": at["tn"], "false_positives": at["fp"],
    }
    predicted = np.where(s_test >= threshold, pos, 1 - pos)
    matrix = reports.confusion_matrix(splits.test.y, predicted, names)
    curves = {"validation": (y_val, s_val), "test": (y_test, s_test)}
    figs = {
        "roc_curve": reports.roc_figure(curves, positive, threshold,
                                        note=f"ROC; dots: threshold {threshold:.3f} chosen on validation"),
        "precision_recall_curve": figures.pr_figure(curves, threshold, positive),
        "confusion_matrix": reports.confusion_matrix_figure(
            matrix, names, f"Confusion matrix (test, threshold {threshold:.3f})"),
        "calibration": figures.calibration_figure(y_test, s_test, config.calibration_bins, positive),
    }
    captions = [f"{names[t]}→{names[p]}\np={s:.2f}" for t, p, s in zip(splits.test.y, predicted, s_test)]
    grid = gradcam_grid(model, splits.test.x, splits.test.y, predicted, np.abs(s_test - threshold), captions,
                        config.gradcam_examples)
    if grid is not None:
        figs["gradcam"] = grid
    predictions = "index,label,score,predicted\n" + "".join(
        f"{i},{names[t]},{s:.6f},{names[p]}\n" for i, (t, s, p) in enumerate(zip(splits.test.y, s_test, predicted)))
    operating = ("split,threshold,policy,sensitivity,specificity,accuracy\n"
                 f"validation,{threshold:.6f},{config.threshold_policy},{val_at['sensitivity']:.4f},"
                 f"{val_at['specificity']:.4f},{val_at['accuracy']:.4f}\n"
                 f"test,{threshold:.6f},{config.threshold_policy},{at['sensitivity']:.4f},"
                 f"{at['specificity']:.4f},{at['accuracy']:.4f}\n")
    notes = [f"threshold {threshold:.4f} on p({positive}) chosen on validation by {config.threshold_policy}"
             + (f" (target {config.threshold_target})" if config.threshold_policy != "youden" else "")
             + " and applied unchanged to test",
             f"test: TP {at['tp']}, FN {at['fn']}, TN {at['tn']}, FP {at['fp']}"]
    decision = Decision(threshold=threshold, positive_class=positive, policy=config.threshold_policy)
    return Evaluation(metrics, figs, {"test_predictions.csv": predictions, "operating_point.csv": operating},
                      notes), decision


def evaluate_multiclass(model, splits: Splits, test_probs: np.ndarray, config: EvaluationConfig) -> Evaluation:
    names = splits.metadata.class_names
    y = splits.test.y
    predicted = test_probs.argmax(axis=1)
    metrics = classification_metrics(y, test_probs)
    aucs = [mb.roc_auc((y == c).astype(int), test_probs[:, c]) for c in range(len(names))]
    metrics["macro_roc_auc"] = float(np.nanmean(aucs))
    matrix = reports.confusion_matrix(y, predicted, names)
    figs = {"confusion_matrix": reports.confusion_matrix_figure(matrix, names)}
    captions = [f"{names[t]} -> {names[p]}\n{test_probs[i, p]:.2f}" for i, (t, p) in enumerate(zip(y, predicted))]
    grid = gradcam_grid(model, splits.test.x, y, predicted, test_probs.max(axis=1), captions, config.gradcam_examples)
    if grid is not None:
        figs["gradcam"] = grid
    per_class = "class,support,recall,roc_auc\n" + "".join(
        f"\"{n}\",{matrix[i].sum()},{matrix[i, i] / max(matrix[i].sum(), 1):.4f},{aucs[i]:.4f}\n"
        for i, n in enumerate(names))
    return Evaluation(metrics, figs, {"per_class.csv": per_class}, notes=["one-vs-rest ROC-AUC averaged over classes"])


def gradcam_grid(model, images: np.ndarray, y: np.ndarray, predicted: np.ndarray, sureness: np.ndarray,
                 captions: list[str], per_group: int):
    """Grad-CAM of the predicted class for the surest correct and surest wrong test cases."""
    from deepsuite.pipelines.medical_imaging.gradcam import GradCam, overlay

    correct, wrong = np.flatnonzero(predicted == y), np.flatnonzero(predicted != y)
    picks = [*correct[np.argsort(-sureness[correct])][:per_group], *wrong[np.argsort(-sureness[wrong])][:per_group]]
    if not per_group or not picks:
        return None
    picks = np.asarray(picks)
    chosen = np.asarray(images[picks])   # a streamed split decodes these images only
    heatmaps = GradCam(model)(chosen, predicted[picks])
    pictures = np.stack([overlay(image, h, size=112) for image, h in zip(chosen, heatmaps)])
    labels = [("ok " if predicted[i] == y[i] else "WRONG ") + captions[i] for i in picks]
    return reports.image_grid(pictures, labels, f"Grad-CAM of the predicted class: {min(len(correct), per_group)} "
                                                f"correct, {min(len(wrong), per_group)} wrong (true -> predicted)")
