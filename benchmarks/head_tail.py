"""Head + tail truncation: does keeping a long text's last tokens help? (issue 13, a probe)

    python benchmarks/head_tail.py --run-dir runs/<run-id> --head 64 -- --recipe cls --seed 42 --pool

01 cuts a text longer than ``max_length`` to its first tokens. Debian descriptions often end
with the sentence that names the package's role ("This package contains the development
files"), and TF-IDF + LR sees the whole text, so the tail may be what the fine-tuned model
misses on long texts; Sun et al. (2019) found head + tail the best cut for BERT on long reviews.

The probe copies the run's 01 and 02 folders to ``runs-exp/headtail<H>-<run-id>``, re-cuts
every truncated text to its first ``H`` tokens and its last ``max_length - H`` (the final
[SEP] included), then runs benchmarks/recipes.py on the copy with the Classifier cutting the
same way, so training, validation, test and the held-out pool all see head + tail. The result
lands in the recipes table under the copy's run name, with this command. Nothing in the
package changes: if the probe won, head + tail would become an 01 option.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import command  # noqa: E402


def head_tail(ids: list[int], limit: int, head: int) -> list[int]:
    """The first ``head`` ids and the last ``limit - head`` (so the final [SEP] stays)."""
    return list(ids) if len(ids) <= limit else list(ids[:head]) + list(ids[len(ids) - (limit - head):])


def build_copy(run_dir: Path, head: int, out_root: Path) -> Path:
    """The run's 01 and 02 with every split's ``input_ids`` re-cut; other columns are kept
    (a re-cut text keeps its length, so its mask and length columns still hold)."""
    import datasets
    from transformers import AutoTokenizer

    from mlclf_utils import artifacts
    from mlclf_utils.modeling.encoders import trained_max_length

    dest = out_root / f"headtail{head}-{run_dir.name}"
    if dest.exists():
        return dest
    model_dir = run_dir / artifacts.TRAIN / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    from transformers import AutoConfig

    limit = trained_max_length(model_dir, AutoConfig.from_pretrained(str(model_dir)))
    if not 0 < head < limit:
        raise SystemExit(f"--head must be between 1 and max_length - 1 = {limit - 1}")
    scratch = dest.with_name(dest.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    for stage in (artifacts.PREPROCESS, artifacts.SAVE_DATA):
        shutil.copytree(run_dir / stage, scratch / stage)
    shutil.copy(run_dir / "manifest.json", scratch / "manifest.json")
    data = scratch / artifacts.SAVE_DATA / artifacts.DATASET_DIR
    for split in artifacts.SPLITS:
        folder = data / split
        ds = datasets.load_from_disk(str(folder))
        full = tokenizer(list(ds["text"]), add_special_tokens=True, truncation=False,
                         verbose=False)["input_ids"]
        recut = [head_tail(ids, limit, head) for ids in full]
        changed = sum(a != list(b) for a, b in zip(recut, ds["input_ids"]))
        print(f"{split}: {changed} of {len(recut)} texts re-cut to head {head} + tail "
              f"{limit - head}", flush=True)
        kept = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".json"
                and p.name not in ("dataset_info.json", "state.json")}
        out = ds.remove_columns("input_ids").add_column("input_ids", recut)
        out.save_to_disk(str(folder.with_name(split + ".new")))
        shutil.rmtree(folder)
        folder.with_name(split + ".new").rename(folder)
        for name, raw in kept.items():  # the label map 02 wrote beside the arrow files
            (folder / name).write_bytes(raw)
    scratch.rename(dest)
    return dest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a run with 01-03 done (only read)")
    parser.add_argument("--head", type=int, default=64, help="tokens kept from the start")
    parser.add_argument("--out-root", default=str(ROOT / "runs-exp"))
    parser.add_argument("recipe_args", nargs=argparse.REMAINDER,
                        help="after --: benchmarks/recipes.py's arguments, without --run-dir")
    args = parser.parse_args(argv)
    copy = build_copy(Path(args.run_dir).resolve(), args.head, Path(args.out_root))

    import recipes

    from mlclf_utils.serving import predict

    head = args.head

    class HeadTailClassifier(predict.Classifier):
        """The Classifier cutting as the copy's 02 dataset is cut (no windows here)."""

        def _encode(self, texts):
            encoded = self.tokenizer(list(texts), add_special_tokens=True, truncation=False,
                                     verbose=False)["input_ids"]
            return [head_tail(ids, self.max_length, head) for ids in encoded]

    predict.Classifier = HeadTailClassifier  # recipes.py builds its Classifier through here
    rest = [a for a in args.recipe_args if a != "--"]
    out = recipes.run_recipe(recipes.parse(["--run-dir", str(copy), *rest]))
    result = json.loads(Path(out).read_text())
    result["command"] = command("head_tail", argv if argv is not None else sys.argv[1:])
    result["hyperparameters"]["truncation"] = f"head {head} + tail"
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
