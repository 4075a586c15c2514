"""The resolved services (resolve.py) as Kubernetes objects: the same specs that compose runs.

Each service becomes a Deployment and, when it has a port, a Service of the same name, so
the host names the specs use between services (``http://vllm:8000/v1``) resolve in the
cluster as they do in compose. Public services (policy, rewarder) get
``deploy.kubernetes.service_type`` (LoadBalancer by default) on the port the arms use; internal
ones (vLLM) a ClusterIP and a NetworkPolicy that admits only this deployment's pods.

Translations, one rule each:
- GPUs: ``nvidia.com/gpu`` limits, the GPU nodes' selector and tolerations, and the runtime
  class when the lab names one. Kubernetes gives each pod whole GPUs; there are no device ids.
- Resources: CPU and memory requested as the spec states them; memory capped at the same
  figure (memory cannot be taken back once given, so a pod that needs more is refused, not
  the node squeezed); CPU never capped, since a throttled policy server misses its deadlines.
- Health check -> probes, all three from the one check, as an HTTP GET when the check is an
  HTTP check, else the check's own command. With compose's meaning of the numbers: the start
  period becomes a startup probe that allows ``start_period / interval`` failures (plus the
  retries) before the container is restarted; after it, ``retries`` failed checks take the
  pod out of the Service (readiness) and twice as many restart it (liveness).
- ``depends_on``: an init container that waits until the dependency's HTTP check answers 200
  through its Service (compose's ``service_healthy``); without an HTTP check, nothing waits.
- ``ipc_host``: Kubernetes shares no host IPC, so a memory-backed /dev/shm instead.
- Volumes: PersistentVolumeClaims, the lab's model cache among them (``access_mode``, by
  default ReadWriteMany, because pods on several nodes share it). The cache's one owner
  (uid/gid 1000) is kept as compose keeps it: pods that mount it have ``fsGroup`` 1000, and an
  upstream image that mounts it runs as 1000:1000, as resolve.py says.
- Secrets: environment variables from one Secret by reference (``secretKeyRef``); the API key
  is required (unless ``--insecure``), so a pod without it does not start. vla's own containers also get every other
  variable of the Secret (a plugin's token). No value is ever written.
- Replicas (``deploy.kubernetes.replicas``): spread over nodes where possible, with a
  disruption budget that keeps all but one running through a node drain.

Every pod sets ``enableServiceLinks: false``: Kubernetes would otherwise put variables such as
``REWARDER_PORT=tcp://10.0.0.7:18080`` into every container, which vla's config reads as the
rewarder's port and vLLM reads as its own ``VLLM_PORT``.
"""

from __future__ import annotations

import copy
import math
import posixpath
import re
from typing import Any

from vla.config import DeployConfig, KubernetesConfig
from vla.deploy.errors import DeployError
from vla.deploy.resolve import CACHE_OWNER, LAB_CONFIG_TARGET, ResolvedService
from vla.specs import HealthCheck

GPU_RESOURCE = "nvidia.com/gpu"
LAB_CONFIG_MAP = "lab-config"
LAB_CONFIG_KEY = posixpath.basename(LAB_CONFIG_TARGET)
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PORT_NAME = "http"  # the policy's WebSocket shares its port with /healthz and /metrics
# A DNS-1035 label: what a Service name (and so a host name between services) must be.
DNS_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# Enough for python3 and urllib while an init container waits.
WAIT_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


def namespace_of(deploy: DeployConfig) -> str:
    return deploy.kubernetes.namespace or deploy.project


def secret_name(deploy: DeployConfig) -> str:
    return deploy.kubernetes.secret or f"{deploy.project}-secrets"


def check_config(deploy: DeployConfig, services: list[ResolvedService]) -> None:
    """Refuse what a cluster would refuse, naming the key, before anything is written."""
    k8s: KubernetesConfig = deploy.kubernetes
    key = "deploy.kubernetes"
    namespace = namespace_of(deploy)
    if not DNS_LABEL_RE.match(namespace):
        where = f"{key}.namespace" if k8s.namespace else "deploy.project"
        raise DeployError(f"{where}: {namespace!r} cannot be a Kubernetes namespace (lowercase letters, digits and '-', starting with a letter)")
    if k8s.service_type not in SERVICE_TYPES:
        raise DeployError(f"{key}.service_type: {k8s.service_type!r} is not one of {', '.join(SERVICE_TYPES)}")
    if k8s.access_mode not in ACCESS_MODES:
        raise DeployError(f"{key}.access_mode: {k8s.access_mode!r} is not one of {', '.join(ACCESS_MODES)}")
    for field in ("cache_size", "volume_size"):
        if not QUANTITY_RE.match(getattr(k8s, field)):
            raise DeployError(f"{key}.{field}: {getattr(k8s, field)!r} is not a storage size like '200Gi'")
    for i, t in enumerate(k8s.gpu_tolerations):
        where = f"{key}.gpu_tolerations[{i}]"
        if t.operator not in ("Exists", "Equal"):
            raise DeployError(f"{where}.operator: {t.operator!r} is not Exists or Equal")
        if (t.operator == "Equal") != (t.value is not None):
            raise DeployError(f"{where}: operator Equal needs a value, and Exists takes none")
        if t.effect is not None and t.effect not in TAINT_EFFECTS:
            raise DeployError(f"{where}.effect: {t.effect!r} is not one of {', '.join(TAINT_EFFECTS)} (or null for any)")
    for s in services:
        for source, _ in s.host_mounts:
            raise DeployError(
                f"--set names {source}, a path on this host, which the cluster's pods cannot see: put it into "
                f"an image or a volume and --set the path inside the pod"
            )
    names = {s.name: s for s in services}
    for name, count in k8s.replicas.items():
        if name not in names:
            raise DeployError(f"{key}.replicas.{name}: no such service (this deployment has {', '.join(names)})")
        if count < 0:
            raise DeployError(f"{key}.replicas.{name}: expected a number of pods >= 0, got {count}")
        if count > 1 and names[name].role == "trainer":
            raise DeployError(f"{key}.replicas.{name}: a trainer keeps its state in one process; it cannot be replicated")
    for s in services:
        for name in (s.name,) + ((s.spec.name,) if _alias(s) else ()):
            if not DNS_LABEL_RE.match(name):
                raise DeployError(
                    f"service {name!r} of {s.role} {s.component!r} cannot be a Kubernetes Service name "
                    f"(lowercase letters, digits and '-', starting with a letter, at most 63)"
                )
    claims = {deploy.model_cache_volume} | {m.key for s in services for m in s.mounts if not m.cache}
    for claim in sorted(claims):
        if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", claim):
            raise DeployError(f"volume {claim!r} cannot be a Kubernetes claim name (lowercase letters, digits, '-' and '.')")


def _alias(s: ResolvedService) -> bool:
    """compose's network alias: the main service is also reachable by its spec name."""
    return s.main and s.spec.name != s.name and s.spec.port is not None


def _escape(value: str) -> str:
    # Kubernetes expands $(VAR) in args and env values; a spec's literal text must survive
    return value.replace("$(", "$$(")


def _meta(name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def selector_labels(project: str, service: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": project, "app.kubernetes.io/name": service}


def _labels(project: str, s: ResolvedService) -> dict[str, str]:
    return {
        **selector_labels(project, s.name),
        "app.kubernetes.io/component": s.role,
        "app.kubernetes.io/part-of": "vla",
        "app.kubernetes.io/managed-by": "vla",
    }


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def probes(check: HealthCheck) -> dict[str, dict[str, Any]]:
    """startupProbe, readinessProbe and livenessProbe from one health check (see the module doc)."""
    if check.http_port is not None and check.http_path is not None:
        handler: dict[str, Any] = {"httpGet": {"path": check.http_path, "port": check.http_port}}
    else:
        handler = {"exec": {"command": list(check.command)}}
    period, timeout, retries = _seconds(check.interval_s), _seconds(check.timeout_s), max(1, check.retries)
    def probe(failures: int) -> dict[str, Any]:
        return {**copy.deepcopy(handler), "periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": failures}

    return {
        "startupProbe": probe(math.ceil(check.start_period_s / period) + retries),
        "readinessProbe": probe(retries),
        "livenessProbe": probe(2 * retries),
    }


def _service_port(s: ResolvedService) -> int:
    return s.published_port if s.published_port is not None else s.spec.port


def _wait_for(dep_service: ResolvedService, check: HealthCheck, image: str) -> dict[str, Any] | None:
    """An init container that waits until the dependency answers its HTTP check through its Service."""
    if check.http_port is None or check.http_path is None or check.http_port != dep_service.spec.port:
        return None
    url = f"http://{dep_service.name}:{_service_port(dep_service)}{check.http_path}"
    code = (
        "import time,urllib.request\n"
        f"url={url!r}\n"
        "print('waiting for',url,flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        if urllib.request.urlopen(url,timeout=5).status==200: break\n"
        "    except Exception: pass\n"
        f"    time.sleep({_seconds(check.interval_s)})\n"
        "print('ready:',url,flush=True)\n"
    )
    return {
        "name": f"wait-for-{dep_service.name}"[:63],
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", _escape(code)],
        "resources": WAIT_RESOURCES,
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def _container(s: ResolvedService, deploy: DeployConfig, insecure: bool) -> dict[str, Any]:
    spec = s.spec
    c: dict[str, Any] = {"name": s.name, "image": spec.image, "imagePullPolicy": "IfNotPresent"}
    if s.command:
        c["args"] = [_escape(a) for a in s.command]  # compose's command replaces CMD, as args do
    env: list[dict[str, Any]] = [{"name": k, "value": _escape(v)} for k, v in s.environment.items()]
    for var in s.secrets:
        required = var == "VLA_API_KEY" and not insecure  # no pod serves the arms without its key
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name(deploy), "key": var, "optional": not required}}})
    if env:
        c["env"] = env
    if s.ours:
        # whatever else the lab puts in the Secret (a plugin's token) reaches vla's own containers
        c["envFrom"] = [{"secretRef": {"name": secret_name(deploy), "optional": True}}]
    if spec.port is not None:
        c["ports"] = [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}]
    memory = _mebibytes(spec.resources.memory_gib)
    resources: dict[str, Any] = {
        "requests": {"cpu": _millicores(spec.resources.cpu), "memory": memory},
        "limits": {"memory": memory},
    }
    if spec.gpus > 0:
        resources["limits"][GPU_RESOURCE] = spec.gpus
    c["resources"] = resources
    if spec.healthcheck is not None:
        c.update(probes(spec.healthcheck))
    mounts = [{"name": _volume_name(m.key), "mountPath": m.target} for m in s.mounts]
    if s.lab_config:
        mounts.append({"name": LAB_CONFIG_MAP, "mountPath": posixpath.dirname(LAB_CONFIG_TARGET), "readOnly": True})
    if spec.ipc_host:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if mounts:
        c["volumeMounts"] = mounts
    security: dict[str, Any] = {"allowPrivilegeEscalation": False}
    if s.user is not None:
        uid, _, gid = s.user.partition(":")
        security.update({"runAsUser": int(uid), "runAsGroup": int(gid or uid)})
    c["securityContext"] = security
    return c


def _millicores(cores: float) -> str:
    milli = math.ceil(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _mebibytes(gib: float) -> str:
    mib = math.ceil(gib * 1024)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _volume_name(key: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", key)[:63].strip("-") or "volume"


def _claim_name(deploy: DeployConfig, mount) -> str:
    return deploy.model_cache_volume if mount.cache else mount.key


def _pod_volumes(s: ResolvedService, deploy: DeployConfig) -> list[dict[str, Any]]:
    volumes: dict[str, dict[str, Any]] = {}
    for m in s.mounts:
        volumes[_volume_name(m.key)] = {"persistentVolumeClaim": {"claimName": _claim_name(deploy, m)}}
    if s.lab_config:
        volumes[LAB_CONFIG_MAP] = {"configMap": {"name": LAB_CONFIG_MAP, "items": [{"key": LAB_CONFIG_KEY, "path": LAB_CONFIG_KEY}]}}
    if s.spec.ipc_host:
        volumes["dshm"] = {"emptyDir": {"medium": "Memory"}}
    return [{"name": name, **source} for name, source in volumes.items()]


def _replicas(s: ResolvedService, deploy: DeployConfig) -> int:
    return deploy.kubernetes.replicas.get(s.name, 1)


def deployment(s: ResolvedService, deploy: DeployConfig, by_name: dict[str, ResolvedService], insecure: bool = False) -> dict[str, Any]:
    k8s = deploy.kubernetes
    project, namespace = deploy.project, namespace_of(deploy)
    labels = _labels(project, s)
    pod: dict[str, Any] = {"enableServiceLinks": False}
    if s.spec.gpus > 0:
        if k8s.gpu_node_selector:
            pod["nodeSelector"] = dict(k8s.gpu_node_selector)
        if k8s.gpu_tolerations:
            pod["tolerations"] = [
                {k: v for k, v in (("key", t.key), ("operator", t.operator), ("value", t.value), ("effect", t.effect)) if v is not None}
                for t in k8s.gpu_tolerations
            ]
        if k8s.runtime_class:
            pod["runtimeClassName"] = k8s.runtime_class
    waits = [w for d in s.depends_on if d.healthcheck is not None
             for w in [_wait_for(by_name[d.service], d.healthcheck, s.spec.image)] if w is not None]
    if waits:
        pod["initContainers"] = waits
    pod["containers"] = [_container(s, deploy, insecure)]
    if any(m.cache for m in s.mounts):
        # compose's model-cache-init: the kubelet gives the volume to the cache's group, and
        # only when its top folder is not already theirs (a full chown of weights takes minutes)
        gid = int(CACHE_OWNER.partition(":")[2])
        pod["securityContext"] = {"fsGroup": gid, "fsGroupChangePolicy": "OnRootMismatch"}
    volumes = _pod_volumes(s, deploy)
    if volumes:
        pod["volumes"] = volumes
    replicas = _replicas(s, deploy)
    if replicas > 1:
        # one node going down should not take every copy with it
        pod["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(project, s.name)},
        }]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(s.name, namespace, labels, s.labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(project, s.name)},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def services_for(s: ResolvedService, deploy: DeployConfig) -> list[dict[str, Any]]:
    """The Service the others reach it by (and compose's alias for a main service), if it has a port."""
    if s.spec.port is None:
        return []
    project, namespace = deploy.project, namespace_of(deploy)
    public = s.published_port is not None
    out = []
    for name, kind in [(s.name, deploy.kubernetes.service_type if public else "ClusterIP")] + (
        [(s.spec.name, "ClusterIP")] if _alias(s) else []
    ):
        out.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, namespace, _labels(project, s), s.labels),
            "spec": {
                "type": kind,
                "selector": selector_labels(project, s.name),
                "ports": [{"name": PORT_NAME, "port": _service_port(s), "targetPort": PORT_NAME, "protocol": "TCP"}],
            },
        })
    return out


def disruption_budget(s: ResolvedService, deploy: DeployConfig) -> dict[str, Any] | None:
    if _replicas(s, deploy) < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(s.name, namespace_of(deploy), _labels(deploy.project, s)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(deploy.project, s.name)}},
    }


def network_policy(s: ResolvedService, deploy: DeployConfig) -> dict[str, Any] | None:
    """Internal services (vLLM) answer only this deployment's pods, as compose publishes no port for them."""
    if s.published_port is not None or s.spec.port is None:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(s.name, namespace_of(deploy), _labels(deploy.project, s)),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(deploy.project, s.name)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": deploy.project}}}],
                "ports": [{"port": s.spec.port, "protocol": "TCP"}],
            }],
        },
    }


def claims(services: list[ResolvedService], deploy: DeployConfig) -> list[dict[str, Any]]:
    """One PersistentVolumeClaim per volume the services mount, the model cache first."""
    k8s = deploy.kubernetes
    wanted: dict[str, str] = {}
    for s in services:
        for m in s.mounts:
            wanted.setdefault(_claim_name(deploy, m), k8s.cache_size if m.cache else k8s.volume_size)
    ordered = sorted(wanted.items(), key=lambda kv: (kv[0] != deploy.model_cache_volume, kv[0]))
    out = []
    for name, size in ordered:
        spec: dict[str, Any] = {"accessModes": [k8s.access_mode], "resources": {"requests": {"storage": size}}}
        if k8s.storage_class:
            spec["storageClassName"] = k8s.storage_class
        out.append({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(name, namespace_of(deploy), {"app.kubernetes.io/instance": deploy.project, "app.kubernetes.io/part-of": "vla"}),
            "spec": spec,
        })
    return out


def lab_config_map(text: str, deploy: DeployConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(LAB_CONFIG_MAP, namespace_of(deploy), {"app.kubernetes.io/instance": deploy.project, "app.kubernetes.io/part-of": "vla"}),
        "data": {LAB_CONFIG_KEY: text},
    }


def namespace(deploy: DeployConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace_of(deploy), "labels": {"app.kubernetes.io/part-of": "vla"}},
    }


def manifests(services: list[ResolvedService], deploy: DeployConfig, *, lab_config_text: str | None = None,
              insecure: bool = False) -> dict[str, list[dict[str, Any]]]:
    """File name -> the objects in it, in the order `kubectl apply` should see them."""
    check_config(deploy, services)
    by_name = {s.name: s for s in services}
    # Shared objects first; their names start with a digit, so no service's file (a DNS label,
    # which starts with a letter) can take them, and `kubectl apply -f DIR` meets them first.
    files: dict[str, list[dict[str, Any]]] = {"00-namespace.yaml": [namespace(deploy)]}
    if any(s.lab_config for s in services):
        if lab_config_text is None:
            raise DeployError("the services mount the lab config, but no lab config text was given")
        files["01-lab-config.yaml"] = [lab_config_map(lab_config_text, deploy)]
    volume_claims = claims(services, deploy)
    if volume_claims:
        files["02-volumes.yaml"] = volume_claims
    for s in services:
        objects = [deployment(s, deploy, by_name, insecure), *services_for(s, deploy)]
        objects += [o for o in (disruption_budget(s, deploy), network_policy(s, deploy)) if o is not None]
        files[f"{s.name}.yaml"] = objects
    return files
