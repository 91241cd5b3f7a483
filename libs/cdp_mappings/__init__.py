"""Declarative field mappings: how the unified profile is written to each platform.

A mapping file lists, per (source, target) platform pair, entries `from: <dot path>`,
`to: <dot path>` and optional named `transform`s. `load_mappings` parses and validates a file
in full, reporting every problem with its file, line and entry; `apply_mapping` turns a
unified profile document into one platform's payload. The profile service syncs with these;
`cdp mappings check FILE` validates a file before it is deployed.
"""

from cdp_mappings.apply import MappedRecord, SkippedField, apply_fields
from cdp_mappings.model import FieldMapping, FieldType, Mapping, MappingSet
from cdp_mappings.parser import DEFAULT_PLATFORMS, load_mappings, parse_mappings
from cdp_mappings.paths import PathError, get_path, parse_path, pop_path, set_path
from cdp_mappings.transforms import TRANSFORMS, TransformError
from cdp_settings.config_files import ConfigError, ConfigProblem, load_yaml

__all__ = [
    "DEFAULT_PLATFORMS",
    "TRANSFORMS",
    "ConfigError",
    "ConfigProblem",
    "FieldMapping",
    "FieldType",
    "MappedRecord",
    "Mapping",
    "MappingSet",
    "PathError",
    "SkippedField",
    "TransformError",
    "apply_fields",
    "get_path",
    "load_mappings",
    "load_yaml",
    "parse_mappings",
    "parse_path",
    "pop_path",
    "set_path",
]
