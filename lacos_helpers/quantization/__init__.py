"""8-bit quantization in plain PyTorch, checked against bitsandbytes in the tests:

* **LLM.int8()** for the frozen *weights* (``int8_linear``; :func:`quantize_model` in
  ``convert`` casts a whole model, :func:`load_quantized` loads a checkpoint into 8 bits);
* **blockwise dynamic quantization** for 8-bit Adam's *optimizer states* (``blockwise``, with
  the maps of ``maps``).

``bnb`` is the one place that knows bitsandbytes' 8-bit layers.
"""

from lacos_helpers.quantization.blockwise import (
    BlockwiseQuantState,
    dequantize_blockwise,
    quantize_blockwise,
)
from lacos_helpers.quantization.convert import (
    QUANT_BACKENDS,
    eight_bit_backend,
    has_8bit_layers,
    is_8bit_linear,
    quantize_model,
)
from lacos_helpers.quantization.int8_linear import Int8Linear
from lacos_helpers.quantization.load import load_quantized
from lacos_helpers.quantization.maps import create_dynamic_map, create_linear_map

__all__ = [
    "QUANT_BACKENDS",
    "BlockwiseQuantState",
    "Int8Linear",
    "create_dynamic_map",
    "create_linear_map",
    "dequantize_blockwise",
    "eight_bit_backend",
    "has_8bit_layers",
    "is_8bit_linear",
    "load_quantized",
    "quantize_blockwise",
    "quantize_model",
]
