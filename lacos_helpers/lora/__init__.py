"""LoRA from scratch, checked against peft: the layer (``layer``), injection into a model and
k-bit training preparation (``model``), adapter files in peft's format (``io``) and parameter
counts (``report``)."""

from lacos_helpers.lora.io import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    PEFT_KEY_PREFIX,
    adapter_config,
    load_adapter,
    lora_state_dict,
    register_int8linear,
    save_adapter,
    set_lora_state_dict,
)
from lacos_helpers.lora.layer import LoRALinear, dequantized_linear
from lacos_helpers.lora.model import (
    inject_lora,
    lora_layers,
    merge_lora,
    prepare_for_kbit_training,
    remove_lora,
    unmerge_lora,
)
from lacos_helpers.lora.report import (
    bloom_lora_table,
    format_lora_table,
    format_trainable_report,
    lora_param_count,
    trainable_report,
)

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "PEFT_KEY_PREFIX",
    "LoRALinear",
    "adapter_config",
    "bloom_lora_table",
    "dequantized_linear",
    "format_lora_table",
    "format_trainable_report",
    "inject_lora",
    "load_adapter",
    "lora_layers",
    "lora_param_count",
    "lora_state_dict",
    "merge_lora",
    "prepare_for_kbit_training",
    "register_int8linear",
    "remove_lora",
    "save_adapter",
    "set_lora_state_dict",
    "trainable_report",
    "unmerge_lora",
]
