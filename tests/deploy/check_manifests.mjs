// Renders every Kustomize overlay in deploy/overlays (and the base) with
// `kubectl kustomize`, validates each object against its schema (the
// Kubernetes, Prometheus-operator and KEDA models from tools/node_modules),
// checks what a schema cannot (security contexts, resources, probes on
// declared ports, names that refer to each other), checks the alert rules
// with `promtool check rules`, and writes what the binaries must agree with
// (flags, settings files, ports, probe services) to a contract file that
// deploy_contract_test starts the real binaries on.
//
//   node tests/deploy/check_manifests.mjs --source DIR --out contract.json
//
// Exit status 1 with one line per problem; 0 when every overlay is sound.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const source = path.resolve(args.source ?? ".");
const out = args.out;

const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

const { importTool } = await import(pathToFileURL(path.join(source, "tools", "import.mjs")).href);
const load = importTool;
const YAML = await load("yaml");


// apiVersion -> the module with its models.
function modelModule(apiVersion) {
  if (apiVersion === "v1") return "kubernetes-models/v1";
  const [group, version] = apiVersion.split("/");
  if (group.endsWith("monitoring.coreos.com")) return `@kubernetes-models/prometheus-operator/${group}/${version}`;
  if (group === "keda.sh") return `@kubernetes-models/keda/${group}/${version}`;
  return `kubernetes-models/${group}/${version}`;
}

async function validate(where, object) {
  let mod;
  try {
    mod = await load(modelModule(object.apiVersion));
  } catch {
    problem(where, `no schema for apiVersion ${object.apiVersion}`);
    return;
  }
  const Model = mod[object.kind];
  if (typeof Model !== "function") {
    problem(where, `no schema for ${object.apiVersion} ${object.kind}`);
    return;
  }
  try {
    new Model(object).validate();
  } catch (e) {
    problem(where, `schema: ${e.message.split("\n").slice(0, 6).join("; ")}`);
  }
}

function render(dir) {
  return execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

const podSpecOf = (o) =>
  ["Deployment", "StatefulSet", "DaemonSet", "Job"].includes(o.kind) ? o.spec.template.spec : null;
const selects = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => (labels ?? {})[k] === v);
const quantity = (q) => {
  const m = String(q).match(/^([0-9.]+)(m|Ki|Mi|Gi|Ti)?$/);
  if (!m) return NaN;
  const unit = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }[m[2]] ?? 1;
  return Number(m[1]) * unit;
};

// The checks a schema does not make, on one rendered overlay.
function checkOverlay(name, objects) {
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const workloads = objects.filter(podSpecOf);
  const names = new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`));
  // Only cpu-dev ships the tokens Secret; elsewhere the operator creates it.
  const external = new Set(name === "cpu-dev" ? [] : ["Secret/restyle-tokens"]);

  for (const w of workloads) {
    const where = `${name}: ${w.kind}/${w.metadata.name}`;
    const spec = podSpecOf(w);
    const labels = w.spec.template.metadata.labels;
    if (!selects(w.spec.selector.matchLabels, labels)) problem(where, "its selector does not select its pods");
    const psc = spec.securityContext ?? {};
    if (psc.runAsNonRoot !== true) problem(where, "pod securityContext.runAsNonRoot is not true");
    if (psc.seccompProfile?.type !== "RuntimeDefault") problem(where, "pod seccompProfile is not RuntimeDefault");
    if (spec.automountServiceAccountToken !== false) problem(where, "mounts a service-account token it does not use");
    const gpu = spec.containers.some((c) => c.resources?.limits?.["nvidia.com/gpu"]);
    if (gpu) {
      if (!(spec.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu")) problem(where, "asks for a GPU without the GPU taint's toleration");
      if (!spec.nodeSelector || Object.keys(spec.nodeSelector).length === 0) problem(where, "asks for a GPU without a node selector");
    }
    for (const v of spec.volumes ?? []) {
      if (v.configMap && !names.has(`ConfigMap/${v.configMap.name}`)) problem(where, `volume ${v.name}: no ConfigMap ${v.configMap.name}`);
      if (v.secret && !names.has(`Secret/${v.secret.secretName}`) && !external.has(`Secret/${v.secret.secretName}`)) {
        problem(where, `volume ${v.name}: no Secret ${v.secret.secretName}`);
      }
      if (v.persistentVolumeClaim && !names.has(`PersistentVolumeClaim/${v.persistentVolumeClaim.claimName}`)) {
        problem(where, `volume ${v.name}: no PersistentVolumeClaim ${v.persistentVolumeClaim.claimName}`);
      }
    }
    const volumeNames = new Set([...(spec.volumes ?? []).map((v) => v.name), ...(w.spec.volumeClaimTemplates ?? []).map((t) => t.metadata.name)]);
    for (const c of spec.containers) {
      const cw = `${where} container ${c.name}`;
      const sc = c.securityContext ?? {};
      if (sc.allowPrivilegeEscalation !== false) problem(cw, "allowPrivilegeEscalation is not false");
      if (sc.readOnlyRootFilesystem !== true) problem(cw, "the root filesystem is writable");
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) problem(cw, "does not drop ALL capabilities");
      for (const kind of ["requests", "limits"]) {
        for (const r of ["cpu", "memory"]) {
          if (!c.resources?.[kind]?.[r]) problem(cw, `no ${r} ${kind}`);
        }
      }
      for (const r of Object.keys(c.resources?.requests ?? {})) {
        if (c.resources?.limits?.[r] && quantity(c.resources.requests[r]) > quantity(c.resources.limits[r])) {
          problem(cw, `requests more ${r} than its limit`);
        }
      }
      if (c.resources?.requests?.["nvidia.com/gpu"]) problem(cw, "GPUs belong in limits only");
      const ports = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
      const numbers = new Set(ports.values());
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const p = c[probe];
        if (!p) {
          problem(cw, `no ${probe}`);
          continue;
        }
        if (!p.grpc) problem(cw, `${probe} is not a gRPC health probe`);
        else if (!numbers.has(p.grpc.port)) problem(cw, `${probe} probes port ${p.grpc.port}, which it does not declare`);
      }
      for (const m of c.volumeMounts ?? []) {
        if (!volumeNames.has(m.name)) problem(cw, `mounts ${m.name}, which is no volume`);
      }
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.resourceFieldRef;
        if (ref && !c.resources?.limits?.[ref.resource.replace(/^limits\./, "")]) problem(cw, `env ${e.name}: no ${ref.resource} set`);
      }
    }
  }
  const podsSelectedBy = (selector) => workloads.filter((w) => selects(selector, w.spec.template.metadata.labels));
  const portNamesOf = (ws) => new Set(ws.flatMap((w) => podSpecOf(w).containers.flatMap((c) => (c.ports ?? []).map((p) => p.name))));
  for (const s of byKind("Service")) {
    const where = `${name}: Service/${s.metadata.name}`;
    const pods = podsSelectedBy(s.spec.selector);
    if (pods.length === 0) problem(where, "selects no pods");
    const portNames = portNamesOf(pods);
    for (const p of s.spec.ports) {
      if (typeof p.targetPort === "string" && !portNames.has(p.targetPort)) problem(where, `targetPort ${p.targetPort} is no container port of its pods`);
    }
  }
  for (const np of byKind("NetworkPolicy")) {
    const where = `${name}: NetworkPolicy/${np.metadata.name}`;
    const pods = podsSelectedBy(np.spec.podSelector.matchLabels);
    if (pods.length === 0) problem(where, "selects no pods");
    const portNames = portNamesOf(pods);
    for (const rule of np.spec.ingress ?? []) {
      for (const p of rule.ports ?? []) {
        if (typeof p.port === "string" && !portNames.has(p.port)) problem(where, `port ${p.port} is no container port of its pods`);
      }
      for (const from of rule.from ?? []) {
        if (from.podSelector && podsSelectedBy(from.podSelector.matchLabels).length === 0) problem(where, "a from rule selects no pods");
      }
    }
  }
  for (const pdb of byKind("PodDisruptionBudget")) {
    if (podsSelectedBy(pdb.spec.selector.matchLabels).length === 0) problem(`${name}: PodDisruptionBudget/${pdb.metadata.name}`, "selects no pods");
  }
  for (const sm of byKind("ServiceMonitor")) {
    const services = byKind("Service").filter((s) => selects(sm.spec.selector.matchLabels, s.metadata.labels));
    if (services.length === 0) problem(`${name}: ServiceMonitor/${sm.metadata.name}`, "selects no Service");
    for (const e of sm.spec.endpoints) {
      if (!services.some((s) => s.spec.ports.some((p) => p.name === e.port))) problem(`${name}: ServiceMonitor/${sm.metadata.name}`, `no selected Service has port ${e.port}`);
    }
  }
  for (const pm of byKind("PodMonitor")) {
    const pods = podsSelectedBy(pm.spec.selector.matchLabels);
    if (pods.length === 0) problem(`${name}: PodMonitor/${pm.metadata.name}`, "selects no pods");
    for (const e of pm.spec.podMetricsEndpoints) {
      if (!portNamesOf(pods).has(e.port)) problem(`${name}: PodMonitor/${pm.metadata.name}`, `its pods have no port ${e.port}`);
    }
  }
  for (const so of byKind("ScaledObject")) {
    if (!names.has(`Deployment/${so.spec.scaleTargetRef.name}`)) problem(`${name}: ScaledObject/${so.metadata.name}`, "scales no Deployment");
  }
  for (const hpa of byKind("HorizontalPodAutoscaler")) {
    if (!names.has(`${hpa.spec.scaleTargetRef.kind}/${hpa.spec.scaleTargetRef.name}`)) problem(`${name}: HorizontalPodAutoscaler/${hpa.metadata.name}`, "scales nothing here");
  }
  if (byKind("ScaledObject").length && byKind("HorizontalPodAutoscaler").length) problem(name, "both KEDA and an HPA scale the workers");
}

// What the binaries must agree with: per workload, its container's args,
// the settings file its --config names (from the ConfigMap), its ports and
// probes; and the Services, Secrets and Deployments' names.
function contractOf(objects) {
  const configMaps = Object.fromEntries(objects.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o.data ?? {}]));
  const secrets = Object.fromEntries(
    objects.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, Object.fromEntries(Object.entries(o.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]))]),
  );
  const workloads = {};
  for (const w of objects.filter(podSpecOf)) {
    const spec = podSpecOf(w);
    const c = spec.containers[0];
    const mounts = {};
    for (const m of c.volumeMounts ?? []) {
      const v = (spec.volumes ?? []).find((v) => v.name === m.name);
      mounts[m.mountPath] = v?.configMap ? { configMap: v.configMap.name } : v?.secret ? { secret: v.secret.secretName } : { volume: m.name };
    }
    workloads[w.metadata.labels["app.kubernetes.io/component"]] = {
      kind: w.kind,
      name: w.metadata.name,
      args: c.args ?? [],
      env: Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? (e.valueFrom?.resourceFieldRef ? String(quantity(c.resources.limits[e.valueFrom.resourceFieldRef.resource.replace(/^limits\./, "")])) : "")])),
      ports: Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort])),
      probes: Object.fromEntries(["startupProbe", "readinessProbe", "livenessProbe"].map((p) => [p, c[p]?.grpc ?? null])),
      mounts,
      gpu: Boolean(c.resources?.limits?.["nvidia.com/gpu"]),
      terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds ?? 30,
    };
  }
  const services = Object.fromEntries(
    objects.filter((o) => o.kind === "Service").map((s) => [s.metadata.name, Object.fromEntries(s.spec.ports.map((p) => [p.name, p.port]))]),
  );
  return { workloads, configMaps, secrets, services };
}

function checkRules(name, objects, tmp) {
  for (const rule of objects.filter((o) => o.kind === "PrometheusRule")) {
    const file = path.join(tmp, `${name}-${rule.metadata.name}.rules.yml`);
    fs.writeFileSync(file, YAML.stringify({ groups: rule.spec.groups }));
    try {
      execFileSync("promtool", ["check", "rules", file], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      problem(`${name}: PrometheusRule/${rule.metadata.name}`, `promtool: ${(e.stdout ?? "") + (e.stderr ?? e.message)}`.trim());
    }
  }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "restyle-deploy."));
const contract = {};
const overlays = fs.readdirSync(path.join(source, "deploy", "overlays")).sort();
if (overlays.length === 0) problem("deploy/overlays", "no overlay");
for (const name of ["base", ...overlays]) {
  const dir = name === "base" ? path.join(source, "deploy", "base") : path.join(source, "deploy", "overlays", name);
  let text;
  try {
    text = render(dir);
  } catch (e) {
    problem(name, `kubectl kustomize failed: ${e.stderr ?? e.message}`);
    continue;
  }
  const objects = YAML.parseAllDocuments(text).map((d) => d.toJS()).filter(Boolean);
  for (const o of objects) await validate(`${name}: ${o.kind}/${o.metadata?.name}`, o);
  checkOverlay(name, objects);
  checkRules(name, objects, tmp);
  contract[name] = contractOf(objects);
  console.log(`${name}: ${objects.length} objects (${[...new Set(objects.map((o) => o.kind))].join(", ")})`);
}
fs.rmSync(tmp, { recursive: true, force: true });
if (out) fs.writeFileSync(out, JSON.stringify(contract, null, 2));
if (problems.length) {
  for (const p of problems) console.error(p);
  console.error(`${problems.length} problem(s)`);
  process.exit(1);
}
console.log(`every overlay renders and validates (${overlays.join(", ")})`);
