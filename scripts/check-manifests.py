#!/usr/bin/env python3
"""Checks deploy/kubernetes/ against what `airlock serve` really is (run by manifests_test).

Usage: check-manifests.py MANIFEST_DIR AIRLOCK_EXE SOURCE_DIR

Every file must parse as YAML (python3-yaml from Debian). For each workload running
`airlock serve`: every --flag in its args exists in `airlock serve --help`, --port equals the
container port, liveness/startup probes GET /health and readiness GET /ready (routes the help
names) on that port over HTTPS when the policy sets tls_cert, resources have requests and limits,
terminationGracePeriodSeconds covers [server] drain_timeout_s plus the preStop pause, every path
the policy reads (TLS, store password, CA files) lies under a read-only mount of a Secret or
ConfigMap, and the [store] url holds no password. Services, PodDisruptionBudgets and
HorizontalPodAutoscalers must select or target a workload defined here, a Service's targetPort must
be a container port, and an HPA's metric must be one the gateway exports (src/server).
Overlays in subfolders (inference-extension/) are checked against the same workloads: an
InferencePool must select a workload defined here and target one of its container ports, and an
HTTPRoute must attach to a Gateway and route to InferencePools defined here.
Prints one line per violation; exit status 1 when there is any, 0 otherwise.
"""
import glob
import os
import re
import subprocess
import sys
import tomllib

import yaml


def main():
    manifest_dir, exe, source_dir = sys.argv[1:4]
    problems = []
    docs = []
    paths = sorted(glob.glob(os.path.join(manifest_dir, "*.yaml"))) + \
        sorted(glob.glob(os.path.join(manifest_dir, "*", "*.yaml")))
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                for d in yaml.safe_load_all(f):
                    if d is not None:
                        docs.append((os.path.relpath(path, manifest_dir), d))
        except yaml.YAMLError as e:
            problems.append(f"{path}: not valid YAML: {e}")
    if not docs:
        problems.append(f"{manifest_dir}: no manifests")
    for name, d in docs:
        for field in ("apiVersion", "kind"):
            if field not in d:
                problems.append(f"{name}: a document without {field}")
        if not d.get("metadata", {}).get("name"):
            problems.append(f"{name}: a {d.get('kind')} without metadata.name")

    help_text = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True).stdout
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))
    for route in ("/health", "/ready", "/metrics"):
        if "GET " + route not in help_text:
            problems.append(f"`airlock serve --help` names no GET {route}")
    exported = set()
    for src in glob.glob(os.path.join(source_dir, "src", "server", "**", "*.cc"), recursive=True):
        with open(src, encoding="utf-8") as f:
            exported.update(re.findall(r"# TYPE (airlock_[a-z0-9_]+) ", f.read()))

    config_maps = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "ConfigMap"}
    workloads = {}
    for name, d in docs:
        if d.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        wname = d["metadata"]["name"]
        workloads[(d["kind"], wname)] = d
        where = f"{name}: {d['kind']} {wname}"
        spec = d["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        if spec.get("selector", {}).get("matchLabels", {}).items() - labels.items():
            problems.append(f"{where}: selector does not match the pod labels")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            args = c.get("args", [])
            if c.get("command") != ["airlock"] or not args or args[0] != "serve":
                continue
            cwhere = f"{where} container {c['name']}"
            for a in args:
                if a.startswith("--") and a not in flags:
                    problems.append(f"{cwhere}: {a} is not an `airlock serve` flag")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            port_arg = int(args[args.index("--port") + 1]) if "--port" in args else 8080
            if port_arg not in ports.values():
                problems.append(f"{cwhere}: --port {port_arg} is not a container port")
            config = None
            if "--config" in args:
                config = load_policy(args[args.index("--config") + 1], c, volumes, config_maps,
                                     problems, cwhere)
            tls = bool(config and config.get("server", {}).get("tls_cert"))
            for probe, route in (("livenessProbe", "/health"), ("readinessProbe", "/ready"),
                                 ("startupProbe", "/health")):
                p = c.get(probe)
                if p is None:
                    if probe != "startupProbe":
                        problems.append(f"{cwhere}: no {probe}")
                    continue
                get = p.get("httpGet", {})
                if get.get("path") != route:
                    problems.append(f"{cwhere}: {probe} must GET {route}, not {get.get('path')}")
                port = get.get("port")
                if ports.get(port, port) != port_arg:
                    problems.append(f"{cwhere}: {probe} port {port} is not the served port")
                if tls and get.get("scheme") != "HTTPS":
                    problems.append(f"{cwhere}: {probe} must use HTTPS (the policy sets tls_cert)")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                problems.append(f"{cwhere}: resources need requests and limits")
            drain = (config or {}).get("server", {}).get("drain_timeout_s", 30)
            pause = 0
            pre = c.get("lifecycle", {}).get("preStop", {})
            cmd = pre.get("exec", {}).get("command", [])
            if len(cmd) == 2 and cmd[0].endswith("sleep"):
                pause = int(cmd[1])
            else:
                problems.append(f"{cwhere}: no preStop pause before SIGTERM")
            if pod.get("terminationGracePeriodSeconds", 30) <= drain + pause:
                problems.append(f"{cwhere}: terminationGracePeriodSeconds must exceed "
                                f"drain_timeout_s {drain} + preStop {pause}")

    def selects(selector, kind=None):
        return any(selector and not (selector.items() -
                                     w["spec"]["template"]["metadata"]["labels"].items())
                   for (k, _), w in workloads.items() if kind is None or k == kind)

    for name, d in docs:
        kind, dname = d.get("kind"), d["metadata"]["name"]
        where = f"{name}: {kind} {dname}"
        if kind == "Service":
            sel = d["spec"].get("selector", {})
            if not selects(sel):
                problems.append(f"{where}: selects no workload defined here")
            for p in d["spec"].get("ports", []):
                target = p.get("targetPort", p.get("port"))
                if not any(target in (cp.get("name"), cp["containerPort"])
                           for w in workloads.values()
                           if not sel.items() - w["spec"]["template"]["metadata"]["labels"].items()
                           for c in w["spec"]["template"]["spec"]["containers"]
                           for cp in c.get("ports", [])):
                    problems.append(f"{where}: targetPort {target} is no container port")
        elif kind == "PodDisruptionBudget":
            if not selects(d["spec"].get("selector", {}).get("matchLabels", {})):
                problems.append(f"{where}: selects no workload defined here")
        elif kind == "HorizontalPodAutoscaler":
            ref = d["spec"]["scaleTargetRef"]
            if (ref.get("kind"), ref.get("name")) not in workloads:
                problems.append(f"{where}: targets {ref.get('kind')} {ref.get('name')}, "
                                "not defined here")
            for m in d["spec"].get("metrics", []):
                metric = m.get(m.get("type", "").lower(), {}).get("metric", {}).get("name")
                if m.get("type") == "Pods" and metric not in exported:
                    problems.append(f"{where}: metric {metric} is not exported by the gateway "
                                    f"(exported: {', '.join(sorted(exported))})")

    defined = {(d.get("kind"), d["metadata"]["name"]) for _, d in docs}
    for name, d in docs:
        kind, dname = d.get("kind"), d["metadata"]["name"]
        where = f"{name}: {kind} {dname}"
        if kind == "InferencePool":
            spec = d.get("spec", {})
            sel = spec.get("selector", {}).get("matchLabels", {})
            if not selects(sel, "Deployment"):
                problems.append(f"{where}: selects no Deployment defined here")
            pod_ports = {cp["containerPort"]
                         for (k, _), w in workloads.items()
                         if sel and not sel.items() - w["spec"]["template"]["metadata"]["labels"].items()
                         for c in w["spec"]["template"]["spec"]["containers"]
                         for cp in c.get("ports", [])}
            for tp in spec.get("targetPorts", []):
                if tp.get("number") not in pod_ports:
                    problems.append(f"{where}: target port {tp.get('number')} is no container "
                                    "port of the pool's pods")
            if len(spec.get("targetPorts", [])) != 1:
                problems.append(f"{where}: needs exactly one target port")
            ref = spec.get("endpointPickerRef", {})
            if not ref.get("name") or not ref.get("port", {}).get("number"):
                problems.append(f"{where}: endpointPickerRef needs a Service name and port")
        elif kind == "HTTPRoute":
            for parent in d.get("spec", {}).get("parentRefs", []):
                if ("Gateway", parent.get("name")) not in defined:
                    problems.append(f"{where}: parent {parent.get('name')} names no Gateway "
                                    "defined here")
            for rule in d.get("spec", {}).get("rules", []):
                for b in rule.get("backendRefs", []):
                    if b.get("kind") == "InferencePool" and \
                            ("InferencePool", b.get("name")) not in defined:
                        problems.append(f"{where}: backend {b.get('name')} names no "
                                        "InferencePool defined here")

    for p in problems:
        print(p)
    print(f"check-manifests: {len(docs)} manifests, {len(workloads)} workloads, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


def load_policy(path, container, volumes, config_maps, problems, where):
    """The policy TOML a container reads, from the ConfigMap mounted at `path`; checks that every
    file it names is on a read-only Secret or ConfigMap mount."""
    mounts = container.get("volumeMounts", [])
    mount = next((m for m in mounts if m["mountPath"] == path), None)
    if not mount or "configMap" not in volumes.get(mount["name"], {}):
        problems.append(f"{where}: --config {path} is not mounted from a ConfigMap")
        return None
    cm = config_maps.get(volumes[mount["name"]]["configMap"]["name"])
    key = mount.get("subPath", os.path.basename(path))
    if not cm or key not in cm.get("data", {}):
        problems.append(f"{where}: the ConfigMap for {path} is not defined here")
        return None
    try:
        policy = tomllib.loads(cm["data"][key])
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{where}: {path} is not valid TOML: {e}")
        return None
    store = policy.get("store", {})
    if re.match(r"^postgres(ql)?://[^/@]*:[^/@]*@", store.get("url", "")) or \
            "password=" in store.get("url", ""):
        problems.append(f"{where}: [store] url holds a password (use password_file)")
    files = [policy.get("server", {}).get(k) for k in ("tls_cert", "tls_key")]
    files.append(store.get("password_file"))
    files += [u.get("ca_file") for u in policy.get("upstreams", [])]
    for f in filter(None, files):
        owner = next((m for m in mounts if f.startswith(m["mountPath"].rstrip("/") + "/")), None)
        volume = volumes.get(owner["name"], {}) if owner else {}
        if not owner or not owner.get("readOnly") or not ("secret" in volume or
                                                          "configMap" in volume):
            problems.append(f"{where}: {f} is not on a read-only Secret/ConfigMap mount")
    if store.get("password_env"):
        problems.append(f"{where}: the store password comes from the environment; mount it as "
                        "a file (password_file)")
    return policy


if __name__ == "__main__":
    sys.exit(main())
