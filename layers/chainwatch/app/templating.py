"""Reading ``template.yaml``: CloudFormation's short-form tags, and the table definitions the local run creates.

The local run creates exactly the tables the template declares (key schemas, TTL attribute, stream view) so the
two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chainwatch.errors import ConfigError


class _CfnLoader(yaml.SafeLoader):
    """Safe YAML loader that keeps ``!Ref X`` as ``{"Ref": X}`` and ``!GetAtt A.B`` as ``{"Fn::GetAtt": [A, B]}``."""


def _tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: str | Path) -> dict[str, Any]:
    """The template as plain data (short-form intrinsic functions expanded to their long form)."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - safe subclass
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read template {path}: {exc}") from exc
    if not isinstance(data, dict) or "Resources" not in data:
        raise ConfigError(f"{path} is not a CloudFormation template")
    return data


def table_definitions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``CreateTable`` arguments (without the name) per DynamoDB table resource, plus its TTL attribute."""
    tables: dict[str, dict[str, Any]] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource.get("Properties", {})
        spec: dict[str, Any] = {
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if "StreamSpecification" in props:
            spec["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        ttl = props.get("TimeToLiveSpecification")
        tables[logical_id] = {"create": spec, "ttl_attribute": ttl.get("AttributeName") if ttl else None}
    return tables
