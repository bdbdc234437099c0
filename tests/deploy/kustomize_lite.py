"""Render this repository's Kustomize overlays without a kustomize binary (none installs from PyPI or Debian).

Only the kustomization fields deploy/k8s uses are supported, and anything else is refused, so the renderer
cannot silently drop a field: ``resources`` (files and folders with a kustomization.yaml), ``namespace``,
``images`` and ``patches`` (inline JSON 6902 patches with a kind/name target, applied with ``jsonpatch``).
Where ``kubectl kustomize`` exists, tests/deploy checks that both render the same objects.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

__all__ = ["render", "UnsupportedKustomization"]

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
#: kinds without a namespace among those deploy/k8s uses
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
}


class UnsupportedKustomization(ValueError):
    """A kustomization uses a field this renderer does not implement."""


def _load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else spec
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


def _set_image(obj: dict[str, Any], rule: dict[str, Any]) -> None:
    for c in _containers(obj):
        image = c.get("image", "")
        name, _, tag = image.partition(":")
        if name != rule["name"]:
            continue
        c["image"] = (
            f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"
            if rule.get("newTag", tag)
            else rule.get("newName", name)
        )


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    unknown = set(target) - {"kind", "name"}
    if unknown:
        raise UnsupportedKustomization(f"patch target fields {sorted(unknown)} are not supported")
    return all(
        obj.get("kind") == target["kind"] if k == "kind" else obj["metadata"]["name"] == target["name"] for k in target
    )


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build folder`` produces (order aside)."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(k) - SUPPORTED
    if unknown:
        raise UnsupportedKustomization(f"{folder}: kustomization fields {sorted(unknown)} are not supported")
    objects: list[dict[str, Any]] = []
    for ref in k.get("resources", []):
        path = (folder / ref).resolve()
        objects += render(path) if path.is_dir() else [copy.deepcopy(d) for d in _load_docs(path)]
    for patch in k.get("patches", []):
        if set(patch) != {"target", "patch"}:
            raise UnsupportedKustomization(f"{folder}: only inline patches with a target are supported")
        ops = jsonpatch.JsonPatch(yaml.safe_load(patch["patch"]))
        hits = [i for i, o in enumerate(objects) if _matches(o, patch["target"])]
        if not hits:
            raise UnsupportedKustomization(f"{folder}: patch target {patch['target']} matches no object")
        for i in hits:
            objects[i] = ops.apply(objects[i])
    for rule in k.get("images", []):
        for o in objects:
            _set_image(o, rule)
    if "namespace" in k:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    return objects
