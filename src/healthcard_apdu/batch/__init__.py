"""Batch issuance: resident files, validation, a crash-safe journal, one worker per reader.

See docs/batch.md. The runner needs a :class:`CardIssuer` (the personalization engine adapted
to it) and reader slots (PC/SC readers or simulated readers fed from a card pool).
"""

from healthcard_apdu.batch.errors import BatchError, InputError, JournalError, ReaderGoneError
from healthcard_apdu.batch.input import FileInfo, InputRow, read_residents, scan_file
from healthcard_apdu.batch.issuer import (
    CardIdentity,
    CardIssuer,
    IssueOutcome,
    RecordCheckingIssuer,
)
from healthcard_apdu.batch.journal import (
    STATES,
    ChipSerialConflict,
    Journal,
    Pending,
    RowRecord,
    StateConflict,
    default_journal_path,
    is_postgres_target,
)
from healthcard_apdu.batch.runner import (
    BatchRunner,
    RunSummary,
    load_batch,
    validate_file,
)
from healthcard_apdu.batch.slots import (
    CardPool,
    CardStore,
    Disposition,
    Insertion,
    PcscReaderSlot,
    ReaderSlot,
    SimReaderFaults,
    SimReaderSlot,
)
from healthcard_apdu.batch.validate import RecordChecker, RowIssue, RowVerdict, ValidationReport

__all__ = [
    "STATES",
    "BatchError",
    "BatchRunner",
    "CardIdentity",
    "CardIssuer",
    "CardPool",
    "CardStore",
    "ChipSerialConflict",
    "Disposition",
    "FileInfo",
    "InputError",
    "InputRow",
    "Insertion",
    "IssueOutcome",
    "Journal",
    "JournalError",
    "PcscReaderSlot",
    "Pending",
    "ReaderGoneError",
    "ReaderSlot",
    "RecordChecker",
    "RecordCheckingIssuer",
    "RowIssue",
    "RowRecord",
    "RowVerdict",
    "RunSummary",
    "SimReaderFaults",
    "SimReaderSlot",
    "StateConflict",
    "ValidationReport",
    "default_journal_path",
    "is_postgres_target",
    "load_batch",
    "read_residents",
    "scan_file",
    "validate_file",
]
