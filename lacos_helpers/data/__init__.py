"""NLI training triplets and STS evaluation pairs, with one API whatever the source.

``load_nli_triplets`` (``nli``; a run's triplets: ``run_triplets``) and ``load_sts`` (``sts``)
read a local folder laid out as ``shared/data`` (``layout``), the Hugging Face Hub, or the
generated dataset (``generated``), as ``sources`` picks and reports, into :class:`Rows` of
:class:`NLITriplet` or :class:`STSPair` (``rows``). ``sampling``: batches, no text twice.
"""

from lacos_helpers.data.generated import (
    GENERATOR_VERSION,
    ensure_generated,
    generate_dataset,
    generated_sts_meanings,
)
from lacos_helpers.data.nli import load_nli_triplets, run_triplets, training_texts
from lacos_helpers.data.rows import NLITriplet, Rows, STSPair
from lacos_helpers.data.sampling import (
    BatchPlan,
    epoch_order,
    no_duplicate_batches,
    text_key,
)
from lacos_helpers.data.sources import DataFileError, DataSourceError, set_policy
from lacos_helpers.data.sts import describe_sample, load_sts, read_sts, sts_sentences

__all__ = [
    "GENERATOR_VERSION",
    "BatchPlan",
    "DataFileError",
    "DataSourceError",
    "NLITriplet",
    "Rows",
    "STSPair",
    "ensure_generated",
    "epoch_order",
    "generate_dataset",
    "generated_sts_meanings",
    "load_nli_triplets",
    "run_triplets",
    "describe_sample",
    "load_sts",
    "read_sts",
    "no_duplicate_batches",
    "sts_sentences",
    "set_policy",
    "text_key",
    "training_texts",
]
