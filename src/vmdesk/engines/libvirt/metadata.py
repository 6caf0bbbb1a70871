"""The VM description inside its libvirt domain: ``<metadata><vmdesk:vm>`` holds the
description as JSON and where each of its bundle files lives on the host, so any VM-Desk
client that connects to the host sees the same VM (and a domain without it is not ours)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from vmdesk.core.errors import ConfigError, Problem
from vmdesk.engines.libvirt import listing

TYPE_CHECKING = False  # the model (pydantic) is imported only where a description is read
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig

NAMESPACE = listing.NAMESPACE
PREFIX = "vmdesk"


def _tag(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


@dataclass(frozen=True)
class Stored:
    """What a domain carries of ours."""

    config: VMConfig
    files: dict[str, str]  # bundle-relative file -> its path on the host


def element(config: VMConfig, files: Mapping[str, str]) -> ET.Element:
    """``<metadata>`` with our one child (libvirt keeps each namespace's element whole)."""
    # Written with a literal prefix and its declaration on our own element (ElementTree
    # would declare it on <domain>, which libvirt drops, leaving the prefix unbound).
    metadata = ET.Element("metadata")
    ours = ET.SubElement(metadata, f"{PREFIX}:vm", {f"xmlns:{PREFIX}": NAMESPACE})
    description = ET.SubElement(ours, f"{PREFIX}:config")
    from vmdesk.core import config as config_model

    description.text = json.dumps(config_model.to_dict(config), separators=(",", ":"))
    for file, path in sorted(files.items()):
        ET.SubElement(ours, f"{PREFIX}:file", name=file, path=path)
    return metadata


def inner(config: VMConfig, files: Mapping[str, str]) -> str:
    """Our element alone, as ``virDomainSetMetadata`` takes it."""
    return ET.tostring(element(config, files)[0], encoding="unicode")


def read(domain_xml: str) -> Stored | None:
    """Ours from a domain's XML; None for a domain VM-Desk did not make."""
    root = ET.fromstring(domain_xml)
    ours = root.find(f"metadata/{_tag('vm')}")
    if ours is None:
        return None
    return read_inner(ours, context=root.findtext("name") or "?")


def read_inner(ours: ET.Element, *, context: str) -> Stored:
    text = ours.findtext(_tag("config"))
    if not text:
        problem = Problem(
            "", "its VM-Desk metadata holds no description",
            "define it again with vmdesk, or remove its vmdesk:vm metadata by hand",
        )  # fmt: skip
        raise ConfigError([problem], f"libvirt domain {context}")
    from vmdesk.core import config as config_model

    config = config_model.from_json(text, context=f"libvirt domain {context}")
    files = {el.get("name", ""): el.get("path", "") for el in ours.iter(_tag("file"))}
    return Stored(config, files)
