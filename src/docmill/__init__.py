"""docmill: process large collections of documents in parallel."""

from docmill.array import DocumentArray
from docmill.document import Document
from docmill.errors import DocmillError, FormatError, MissingExtra, WorkerCrashed
from docmill.files import from_files
from docmill.io import BinaryWriter, iter_binary, save_binary_stream
from docmill.score import NamedScore

__version__ = "0.1.0"

__all__ = [
    "BinaryWriter",
    "DocmillError",
    "Document",
    "DocumentArray",
    "FormatError",
    "MissingExtra",
    "NamedScore",
    "WorkerCrashed",
    "__version__",
    "from_files",
    "iter_binary",
    "save_binary_stream",
]
