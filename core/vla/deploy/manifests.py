"""`vla up --target k8s`: the folder of manifests that `kubectl apply -k DIR` applies.

The folder holds one file per service (its Deployment, Service and the rest), the shared
objects (namespace, lab config, volume claims), a ``kustomization.yaml`` and a
``secrets.env.example``. The Secret's values live only in ``secrets.env``, which the lab writes
beside them and vla never does: kustomize makes the Secret from it at apply time (with a
content hash in its name, so a changed key rolls the pods), or ``deploy.kubernetes.secret``
names a Secret the cluster already has.

The lab's vla.yaml reaches vla's pods as a ConfigMap without its API keys, which come from the
Secret (``VLA_API_KEY`` sets both keys, as it does everywhere); any other secret-looking
setting would be written in plain text, so it is refused, naming the key.

Before anything is written the objects are checked against the Kubernetes schemas by
kubernetes-validate (offline, strict: an unknown field is an error) when it is installed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from vla.config import DeployConfig
from vla.deploy.errors import DeployError
from vla.deploy.kubernetes import manifests, namespace_of, secret_name
from vla.deploy.resolve import API_KEY_ENV, ResolvedService

HEADER = "# written by `vla up --target k8s`; regenerate rather than edit\n"
KUSTOMIZATION = "kustomization.yaml"
SECRETS_FILE = "secrets.env"
SECRETS_EXAMPLE = "secrets.env.example"
# Settings whose values are credentials (vla.yaml's api_key, a plugin's token ...)
SECRET_KEY_RE = re.compile(r"(^|_)(api_key|token|password|secret)$", re.I)
SECRET_HELP = {
    "VLA_API_KEY": "the API key the policy and rewarder services require (the lab's policy_server.api_key / VLA_API_KEY)",
    "HF_TOKEN": "a Hugging Face token, for gated models only",
}


class _Dumper(yaml.SafeDumper):
    """Block style for text with newlines (the lab config, scripts), and no anchors, so the files read well."""

    def ignore_aliases(self, data):
        return True


def _str(dumper, value):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def cluster_lab_config(path: Path) -> str:
    """The lab's vla.yaml as the cluster gets it: the API keys left to the Secret, nothing secret kept."""
    from vla.config import read_yaml

    data = read_yaml(path)
    data = dict(data) if isinstance(data, dict) else {}
    removed, keys = [], set()
    for section in ("policy_server", "rewarder"):
        block = data.get(section)
        if isinstance(block, dict) and "api_key" in block:
            data[section] = {k: v for k, v in block.items() if k != "api_key"}
            removed.append(f"{section}.api_key")
            if block["api_key"]:
                keys.add(block["api_key"])
    if len(keys) > 1:
        raise DeployError(
            f"{path}: policy_server.api_key and rewarder.api_key differ, but the cluster's pods take one key "
            f"({API_KEY_ENV}, from the Secret) for both; give them the same key"
        )
    leaks = [key for key in _secret_keys(data, "") if key not in removed]
    if leaks:
        raise DeployError(
            f"{path}: {', '.join(leaks)} would be written in plain text into the cluster's ConfigMap; remove it "
            f"from vla.yaml and put the environment variable the plugin reads instead into {SECRETS_FILE} "
            f"(every variable there reaches vla's containers)"
        )
    note = f"# from {path}" + (f", without {' and '.join(removed)} (the pods get {API_KEY_ENV} from the Secret)" if removed else "")
    return note + "\n" + yaml.safe_dump(data, sort_keys=False)


def _secret_keys(value: Any, prefix: str) -> list[str]:
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            key = f"{prefix}{k}"
            if isinstance(k, str) and SECRET_KEY_RE.search(k) and isinstance(v, str) and v:
                found.append(key)
            found.extend(_secret_keys(v, key + "."))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_secret_keys(v, f"{prefix[:-1]}[{i}]." if prefix else f"[{i}]."))
    return found


def kustomization(files: list[str], deploy: DeployConfig, services: list[ResolvedService]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace_of(deploy),
        "resources": files,
    }
    if deploy.kubernetes.secret is None:
        doc["secretGenerator"] = [{"name": secret_name(deploy), "envs": [SECRETS_FILE]}]
    registry = (deploy.kubernetes.image_registry or "").rstrip("/")
    if registry:
        ours = sorted({_image_name(s.spec.image) for s in services if s.ours})
        doc["images"] = [{"name": name, "newName": f"{registry}/{name}"} for name in ours]
    return doc


def _image_name(image: str) -> str:
    """The image without its tag or digest (what kustomize's `images:` matches)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def secrets_example(services: list[ResolvedService]) -> str:
    names = sorted({v for s in services for v in s.secrets}, key=lambda v: (v != API_KEY_ENV, v))
    lines = [
        "# Copy to secrets.env and fill in; kustomize makes the Secret from it at `kubectl apply -k`.",
        "# vla never writes secrets.env, and .gitignore here keeps it out of version control.",
    ]
    for name in names:
        lines += [f"# {SECRET_HELP.get(name, name)}", f"# {name}="]
    return "\n".join(lines) + "\n"


def render(services: list[ResolvedService], deploy: DeployConfig, lab_config_text: str | None,
           insecure: bool = False) -> dict[str, str]:
    """Every file of the folder, by name, as text."""
    files = manifests(services, deploy, lab_config_text=lab_config_text, insecure=insecure)
    texts = {name: HEADER + dump(objects) for name, objects in files.items()}
    texts[KUSTOMIZATION] = HEADER + yaml.safe_dump(kustomization(list(files), deploy, services), sort_keys=False)
    if deploy.kubernetes.secret is None:
        texts[SECRETS_EXAMPLE] = secrets_example(services)
        texts[".gitignore"] = SECRETS_FILE + "\n"
    return texts


def validate(texts: dict[str, str], version: str) -> list[str]:
    """Each object checked against the Kubernetes schemas of ``version`` (strict). Returns the problems."""
    import kubernetes_validate
    from kubernetes_validate.utils import VersionNotSupportedError

    problems = []
    for name, text in texts.items():
        if name == KUSTOMIZATION or not name.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            what = f"{name}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path) or "(top level)"
                problems.append(f"{what}: {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{what}: {exc.message}")
            except VersionNotSupportedError:
                raise DeployError(f"deploy.kubernetes.version: kubernetes-validate has no schemas for Kubernetes {version}") from None
    return problems


def write(out: Path, texts: dict[str, str]) -> list[Path]:
    """Write the folder, removing the files an earlier run wrote that this one does not; never
    touches secrets.env or files vla did not write."""
    out.mkdir(parents=True, exist_ok=True)
    old = out / KUSTOMIZATION
    if old.exists():
        previous = old.read_text()
        if not previous.startswith(HEADER):
            raise DeployError(f"{old} was not written by vla; choose an empty folder with --out")
        for name in (yaml.safe_load(previous) or {}).get("resources", []):
            stale = out / name
            if name not in texts and stale.is_file() and stale.read_text().startswith(HEADER):
                stale.unlink()
    written = []
    for name, text in texts.items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written


def missing_secrets(out: Path, services: list[ResolvedService], insecure: bool = False) -> list[str]:
    """The required secrets that ``out/secrets.env`` does not give a value (all, when it is absent)."""
    required = [] if insecure else sorted({v for s in services for v in s.secrets if v == API_KEY_ENV})
    path = out / SECRETS_FILE
    if not path.is_file():
        return required
    from dotenv import dotenv_values

    values = dotenv_values(path)
    return [v for v in required if not values.get(v)]
