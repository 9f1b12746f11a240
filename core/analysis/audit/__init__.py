"""Dataset audit: likely mislabeled images, exact/near duplicates and train/test leaks, outliers, unreadable files.

Public API (the Improve page and `python -m core audit` use only these)."""

from core.analysis.audit.cache import cached_audit
from core.analysis.audit.jobs import audit_status, start_audit_job
from core.analysis.audit.report import AuditReport, DuplicateGroup, LabelIssue, Leak, Outlier
from core.analysis.audit.runner import run_audit

__all__ = [
    "AuditReport", "DuplicateGroup", "LabelIssue", "Leak", "Outlier",
    "audit_status", "cached_audit", "run_audit", "start_audit_job",
]  # fmt: skip
