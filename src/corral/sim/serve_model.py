"""How long a request takes on one replica: a stated model per GPU type.

    service time = prompt tokens / prefill rate + output tokens / decode rate
    time to first token (unloaded) = prompt tokens / prefill rate
    a replica runs at most `max_batch` requests at once (continuous batching); more wait at the
    gateway

A replica is one GPU serving a Llama-2-13B-class model in 16-bit weights (26 GB). The rates are
derived from the GPUs' datasheets with stated efficiencies, not measured here:

- A100 80 GB SXM: 312 dense BF16 TFLOPS, 2.04 TB/s HBM (NVIDIA A100 datasheet).
  Prefill is compute-bound: 2 x 13e9 FLOPs per token at 50% of peak -> 312e12 x 0.5 / 26e9
  = 6,000 tokens/s. Decode is bandwidth-bound: each step reads the weights and the batch's KV
  cache (0.8 MB per token for 13B: 2 x 40 layers x 5,120 x 2 bytes); at 8 sequences of ~1,370
  tokens (the trace's mean prompt + output) that is 26 + 8.8 GB per step at 80% of peak
  bandwidth (1.63 TB/s) = 21 ms -> 47 tokens/s per sequence; 40 is used (a 15% margin for
  sampling and scheduling overhead).
- H100 80 GB SXM: the Splitwise paper's own ratios (Patel et al., ISCA 2024, Table: H100 vs A100
  has 3.43x the compute and 1.64x the memory bandwidth): prefill 6,000 x 3.43 = 20,580 tokens/s,
  decode 40 x 1.64 = 65.6 tokens/s per sequence.
- `max_batch` 8: the batch at which the decode rate above was worked out; a larger batch would
  serve more at once but slower per sequence, which this model does not follow, so it stops at 8.
- Prices per GPU-hour: Lambda Cloud on-demand, from corral's catalog
  (corral/providers/catalog.json: 8 x A100 80 GB SXM at 1.79, 8 x H100 SXM at 2.99).
- Cold start 60 s: a replica is a GPU already in the pool; starting it means pulling a cached
  image and loading 26 GB of weights from local NVMe (~2 GB/s) plus engine warm-up. A cloud VM
  that must also boot would take minutes: `--cold-start` changes it.

What the model leaves out: decode slowing with batch size and context length, prefill
interfering with decode, prefix caching, and failures. Requests never fail; they wait.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["PROFILES", "GpuProfile"]


@dataclass(frozen=True)
class GpuProfile:
    name: str
    prefill_tokens_s: float
    decode_tokens_s: float  # per sequence, at up to max_batch sequences
    max_batch: int
    price_per_hour: float  # one replica (one GPU)
    cold_start_s: float

    def prefill_s(self, prompt_tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return prompt_tokens / self.prefill_tokens_s

    def service_s(self, prompt_tokens: npt.NDArray[np.int64],
                  output_tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return self.prefill_s(prompt_tokens) + output_tokens / self.decode_tokens_s


PROFILES = {
    "a100": GpuProfile("a100", prefill_tokens_s=6_000.0, decode_tokens_s=40.0, max_batch=8,
                       price_per_hour=1.79, cold_start_s=60.0),
    "h100": GpuProfile("h100", prefill_tokens_s=20_580.0, decode_tokens_s=65.6, max_batch=8,
                       price_per_hour=2.99, cold_start_s=60.0),
}
