"""Masking: find sensitive values in results and rewrite them, valid for their type.

Pure code (no sockets, no event loop). The pieces, in the order a result meets them:
`classifier` decides per table column (labels, then `names` with its `name_rules`, then the
type in `pgtypes`); `planner` maps a RowDescription's columns to those decisions; `plan` builds
one `RowMaskPlan` per result and rewrites DataRows with `strategies` (whole values, through
`pgvalues`, `datetext`, `partial` and `tokens`) and, for free-text columns, `bulk` (one
Hyperscan pass) with `detectors`, `candidates` and `validators` (precise checks) and `spans`
(in-place masking); `user_patterns` adds RE2 patterns. docs/masking.md explains it for users.
"""

from __future__ import annotations

from bastion.masking.bulk import ContentScanner, Finding
from bastion.masking.classes import CLASS_SPECS, SensitiveClass, Strategy
from bastion.masking.classifier import (
    Action,
    CatalogColumn,
    Classification,
    classify_column,
    classify_columns,
    unmatched_labels,
)
from bastion.masking.detectors import DEFAULT_DETECTORS, Detector
from bastion.masking.names import NameMatch, classify_name
from bastion.masking.plan import MaskPlanBuilder, RowMaskPlan, default_scanner, mask_text
from bastion.masking.planner import CatalogMaskPlanner
from bastion.masking.strategies import mask_value, resolve_masker
from bastion.masking.tokens import TokenKey
from bastion.masking.user_patterns import UserPattern

__all__ = [
    "CLASS_SPECS",
    "DEFAULT_DETECTORS",
    "Action",
    "CatalogColumn",
    "CatalogMaskPlanner",
    "Classification",
    "ContentScanner",
    "Detector",
    "Finding",
    "MaskPlanBuilder",
    "NameMatch",
    "RowMaskPlan",
    "SensitiveClass",
    "Strategy",
    "TokenKey",
    "UserPattern",
    "classify_column",
    "classify_columns",
    "classify_name",
    "default_scanner",
    "mask_text",
    "mask_value",
    "resolve_masker",
    "unmatched_labels",
]
