"""Names of the config.pbtxt `parameters` the adapters read; the builder writes the same ones."""

FUNCTION = "function"  # "package.module:callable" a Python step calls over each batch
LABELS_FILE = "labels_file"  # labels file in the model directory, passed to the step function
DEFAULT_ONNX_MODEL_FILE = "model.onnx"  # the file Triton's ONNX Runtime backend serves
# Triton's ONNX Runtime backend reads these (its own names)
ORT_INTRA_OP_THREADS = "intra_op_thread_count"
ORT_INTER_OP_THREADS = "inter_op_thread_count"
MAX_ELEMENT_BYTES = "max_element_bytes"  # bound on one BYTES element of a Python step's input
TEXT_INPUTS = "text_inputs"  # comma-separated BYTES inputs of a Python step that must be UTF-8
REQUEST_PARAMETERS = "request_parameters"  # comma-separated request parameters that override
#                                            step parameters of the same name, per request
# A Python step's assets (tokenizers, vocabularies) are copied into `<model dir>/assets/` at
# build time, and the step's parameter names them relative to the model directory
# ("assets/tokenizer"); the adapter resolves such paths against the model directory.
ASSETS_DIR = "assets"
