"""Benchmark: text-generation `default` preset on Tiny Shakespeare (nanoGPT's split: first 90% train,
last 10% val). Target on this 2-core CPU: validation loss <= 1.65 nats/char with <= 15 min of training.
GPU target (issue 14): `--preset full` with KERAS_BACKEND=jax on an H100, val loss <= 1.47 within 2 min.

Prints the validation loss (the pipeline's test figures are computed on the validation text), training
seconds, training tokens/second, sampling tokens/second, the machine's load average and the reference
figures, and logs the bench figures to the run in MLflow.

    python bench/text_generation.py [--preset default] [--set key=value ...] [--store bench/results/mlruns]
    python bench/text_generation.py --preset smoke      # quick end-to-end check: figures, targets not gated

Then, in the same process, the keras-io miniature GPT recipe (bench/peers/keras_io_mini_gpt.py: one transformer
block, 256 wide, 2 heads) is trained on the same token ids for the same number of training tokens as our run and
scored on the same windows of the same text; both are printed side by side with the loss delta and the
training-time ratio (preset `default` without --set records bench/figures/text_generation.json).

Exits 1 when a target is missed (except with --preset smoke, which is judged against the CPU targets).
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness import SHARED_DATA, describe_data, finish, parser, run_bench, verdict
from peers.keras_io_mini_gpt import mini_gpt_loss
from record import BenchResult, Figure, ratio_lines, save

from deepsuite.app import registry
from deepsuite.pipelines.text_generation.data import EVAL_BATCH, SequentialWindows

TINY = SHARED_DATA / "tinyshakespeare.txt"
REFERENCE = [  # (val loss, what, seconds)
    (1.80, "plain Keras GPT 4x128, context 64, batch 12, 2000 iters (TensorFlow, this machine)", 185),
    (1.683, "plain Keras GPT 4x192, context 128, batch 32, cosine unfinished (~8k tokens/s, this machine)", 887),
    (1.88, "nanoGPT baby GPT on a laptop CPU (README)", None),
    (1.4697, "nanoGPT shakespeare-char 6x384, context 256, A100 (README)", 180),
]
TARGETS = {"default": (1.65, 900), "full": (1.47, 120)}
TARGETS["smoke"] = TARGETS["default"]  # printed beside the smoke figures, not gated


def main() -> int:
    args = parser(__doc__).parse_args()
    if not TINY.exists():
        sys.exit(f"{TINY} is missing (the bench reads Tiny Shakespeare from ../shared/data)")
    pipeline = registry.get("text-generation")
    seen = []
    load = pipeline.load_data
    pipeline.load_data = lambda config: seen.append(load(config)) or seen[-1]   # the peer trains on these splits
    bench = run_bench(pipeline, args, [f"data.source=text:{TINY}"])
    config, result, run = bench.config, bench.result, bench.run
    fit_seconds, epochs = bench.fit_seconds, bench.epochs
    steps = epochs * config.data.steps_per_epoch
    train_tokens = steps * config.train.batch_size * config.model.context
    bench.log({"bench_fit_seconds": fit_seconds, "bench_train_tokens_per_second": train_tokens / fit_seconds})

    val_loss = result.metrics["test_loss"]
    target_loss, target_seconds = TARGETS.get(args.preset, (None, None))
    m = config.model
    print(f"text-generation bench, preset {args.preset} {' '.join(args.overrides)}")
    print(f"  run {result.run_name} ({result.run_id}), backend {run.data.tags.get('backend')}, "
          f"device {run.data.tags.get('device')}")
    print(f"  model              {m.kind} {m.num_layers} x {m.dim}, {m.num_heads} heads, context {m.context}, "
          f"batch {config.train.batch_size}, {steps} steps ({train_tokens / 1e6:.2f} M tokens), "
          f"{int(run.data.params.get('data.size.train', 0))} train / {int(run.data.params.get('data.size.val', 0))} "
          "val characters")
    per_epoch = ", ".join(f"{v:.3f}" for v in result.history.get("val_loss", []))
    print(f"  val loss per epoch {per_epoch}")
    line = f"  val loss           {val_loss:.4f} nats/char (perplexity {result.metrics['test_perplexity']:.3f})"
    if target_loss:
        line += f"   (target <= {target_loss}: {verdict(val_loss <= target_loss)})"
    print(line)
    line = f"  training seconds   {fit_seconds:.0f}"
    if target_seconds:
        line += f"    (target <= {target_seconds}: {verdict(fit_seconds <= target_seconds)}; {epochs} epochs)"
    print(line)
    print(f"  train tokens/s     {train_tokens / fit_seconds:.0f}")
    print(f"  sampling tokens/s  {result.metrics['test_generation_tokens_per_second']:.0f} (KV cache, batch 1)")
    print(f"  peak memory        {bench.peak_mb:.0f} MB; wall {bench.wall:.0f} s in all")
    print(f"  {bench.load_line()}")
    print("  for scale (val loss):")
    for loss, name, seconds in REFERENCE:
        print(f"    {loss:.4f}  {name}" + (f", {seconds} s" if seconds else ""))
    samples = Path(run.info.artifact_uri.removeprefix("file://")) / "tables" / "samples.txt"
    if samples.exists():
        print("  samples (tables/samples.txt), first 300 characters at temperature 0.8:")
        text = samples.read_text(encoding="utf-8")
        part = text.split("=== temperature 0.8")[1].split("===\n", 1)[1] if "=== temperature 0.8" in text else text
        print("    " + part[:300].replace("\n", "\n    "))

    # The peer: keras-io's miniature GPT on the same token ids, the same number of training tokens, scored on
    # the same windows of the same text as our test_loss (the validation text unless data.test_fraction > 0).
    splits = seen[-1]
    data_line = describe_data(splits, config.seed)
    windows = SequentialWindows(splits.test.x, m.context, EVAL_BATCH, config.data.max_eval_tokens)
    xla = m.xla and not config.deterministic
    peer_loss, peer_seconds, peer_steps = mini_gpt_loss(
        splits.train.x, windows, splits.metadata.vocab_size, m.context, train_tokens, config.seed,
        jit_compile=True if xla and run.data.tags.get("backend", "tensorflow") == "tensorflow" else "auto")
    print(f"  peer: keras-io miniature GPT (1 block, 256 wide, 2 heads, FF 256, Adam 1e-3, batch 128), context "
          f"{m.context}, {peer_steps} steps = {windows_tokens(train_tokens, m.context)} training tokens "
          f"(ours {train_tokens}), seed {config.seed}, scored on the same {windows.num_tokens} tokens")
    targets = [f"val loss <= {target_loss}: {'met' if val_loss <= target_loss else 'NOT met'}"] if target_loss else []
    if target_seconds:
        targets.append(f"training <= {target_seconds} s: {'met' if fit_seconds <= target_seconds else 'NOT met'}")
    which = "validation" if splits.metadata.test_is_validation else "test"
    result = BenchResult(
        "text_generation", "python bench/text_generation.py", f"{which} loss (nats/char)", False,
        Figure(f"{m.kind} {m.num_layers} x {m.dim}, context {m.context} ({steps} steps)", val_loss, fit_seconds),
        [Figure(f"keras-io miniature GPT ({peer_steps} steps of 128)", peer_loss, peer_seconds,
                f"same token ids and training-token budget ({train_tokens} tokens), same evaluation windows")],
        config.seed, data_line.split(" | ", 1)[1],
        "recipe sized while watching the validation loss, which is also the figure (nanoGPT's protocol: "
        "no test text); the peer is scored on the same text", targets)
    print("\n".join("  " + line for line in ratio_lines(result)))
    if args.preset == "default" and not args.overrides:
        print(f"recorded in {save(result)}")
    return finish(args.preset)


def windows_tokens(tokens: int, context: int) -> int:
    """The peer's training tokens: whole windows, at least our budget."""
    return -(-tokens // context) * context


if __name__ == "__main__":
    sys.exit(main())
