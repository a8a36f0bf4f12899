// Renders every Kustomize overlay in deploy/overlays (and the base) with
// `kubectl kustomize`, validates each object against its schema (the
// Kubernetes, Prometheus-operator and KEDA models from tools/node_modules),
// checks what a schema cannot (security contexts, resources, probes on
// declared ports, names that refer to each other), checks the alert rules
// with `promtool check rules`, and writes what the binaries must agree with
// (flags, settings files, ports, probe services) to a contract file that
// deploy_contract_test starts the real binaries on. A front of more than one
// replica (overlays/replicated) must have what several replicas need: the
// job database in PostgreSQL from a Secret, the artifacts on a ReadWriteMany
// volume, an advertised address, a disruption budget, spreading over nodes.
// Objects the operator creates (a Secret) are shown by an overlay's
// *.example.yaml, which is validated and whose keys must be those referred to.
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
const problem = (where, what) => {
  if (!problems.includes(`${where}: ${what}`)) problems.push(`${where}: ${what}`);
};

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

// A flat TOML settings file (the ConfigMaps' restyled.toml, worker.toml):
// key -> value, quotes removed.
const settingsOf = (text) =>
  Object.fromEntries(
    String(text ?? "")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#") && l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")).trim(), l.slice(l.indexOf("=") + 1).trim().replace(/^"(.*)"$/, "$1")]),
  );
// The settings file a container's `--config=PATH` names, from the ConfigMap
// mounted there; {} when none.
function configOf(objects, spec, container) {
  const arg = (container.args ?? []).find((a) => a.startsWith("--config="));
  if (!arg) return {};
  const file = arg.slice("--config=".length);
  for (const m of container.volumeMounts ?? []) {
    if (!file.startsWith(m.mountPath + "/")) continue;
    const v = (spec.volumes ?? []).find((v) => v.name === m.name);
    const cm = v?.configMap && objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === v.configMap.name);
    if (cm) return settingsOf(cm.data?.[file.slice(m.mountPath.length + 1)]);
  }
  return {};
}
// The objects an overlay shows as examples of what the operator creates
// (deploy/overlays/NAME/*.example.yaml): not rendered, but referred to.
function examplesOf(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".example.yaml"))
    .sort()
    .flatMap((f) => YAML.parseAllDocuments(fs.readFileSync(path.join(dir, f), "utf8")).map((d) => [f, d.toJS()]))
    .filter(([, o]) => o);
}
const secretKeys = (o) => new Set([...Object.keys(o.data ?? {}), ...Object.keys(o.stringData ?? {})]);
const secretData = (o) => ({
  ...Object.fromEntries(Object.entries(o.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()])),
  ...(o.stringData ?? {}),
});

// What a front of several replicas needs (docs/deploy.md, "A replicated front
// on PostgreSQL"); `base` is the base's rendered objects, whose front's probes
// and grace period the replicas keep.
function checkReplicatedFront(name, objects, front, examples, base) {
  const where = `${name}: ${front.kind}/${front.metadata.name}`;
  const spec = podSpecOf(front);
  const c = spec.containers.find((c) => c.name === "front") ?? spec.containers[0];
  const replicas = front.spec.replicas ?? 1;
  if (front.kind !== "Deployment") problem(where, "several front replicas: a Deployment, not a " + front.kind);
  const env = new Map((c.env ?? []).map((e) => [e.name, e]));
  const secretOf = (e) => e?.valueFrom?.secretKeyRef;
  // The job database: PostgreSQL, from a Secret (restyled reads
  // RESTYLE_DATABASE_URL, libpq PGPASSWORD), never SQLite on a shared volume.
  const url = secretOf(env.get("RESTYLE_DATABASE_URL"));
  const password = secretOf(env.get("PGPASSWORD"));
  if (!url) problem(where, "RESTYLE_DATABASE_URL does not come from a Secret (several replicas need PostgreSQL)");
  if (!password) problem(where, "PGPASSWORD does not come from a Secret");
  if (url && password && url.name !== password.name) problem(where, "RESTYLE_DATABASE_URL and PGPASSWORD come from different Secrets");
  if ((c.args ?? []).some((a) => a.startsWith("--database-url"))) problem(where, "the database URL is in its args, not the Secret");
  for (const ref of [url, password].filter(Boolean)) {
    const rendered = objects.find((o) => o.kind === "Secret" && o.metadata.name === ref.name);
    const example = examples.find(([, o]) => o.kind === "Secret" && o.metadata?.name === ref.name)?.[1];
    if (rendered) problem(where, `the overlay renders Secret ${ref.name}: applying it would overwrite the operator's`);
    if (!example) problem(where, `no ${ref.name} example Secret (*.example.yaml) shows what to create`);
    else if (!secretKeys(example).has(ref.key)) problem(where, `the example Secret ${ref.name} has no key ${ref.key}`);
  }
  const exampleUrl = url && examples.find(([, o]) => o.kind === "Secret" && o.metadata?.name === url.name)?.[1];
  if (exampleUrl && !/^postgres(ql)?:\/\//.test(secretData(exampleUrl)[url.key] ?? "")) problem(where, "the example database URL is not postgresql://");
  // Each replica's address for the others: $(POD_IP) from the downward API
  // and the container's api port.
  const api = (c.ports ?? []).find((p) => p.name === "api")?.containerPort;
  const podIp = env.get("POD_IP")?.valueFrom?.fieldRef?.fieldPath;
  const advertise = env.get("RESTYLE_ADVERTISE_ADDRESS")?.value;
  if (podIp !== "status.podIP") problem(where, "POD_IP is not the downward API's status.podIP");
  if (advertise !== `$(POD_IP):${api}` && advertise !== `[$(POD_IP)]:${api}`) {
    problem(where, `RESTYLE_ADVERTISE_ADDRESS is ${JSON.stringify(advertise)}, not "$(POD_IP):${api}" (the api port)`);
  }
  // Artifacts (--data-dir) on one volume every replica mounts read-write.
  const dataDir = configOf(objects, spec, c)["data-dir"];
  const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === dataDir);
  const claim = mount && (spec.volumes ?? []).find((v) => v.name === mount.name)?.persistentVolumeClaim?.claimName;
  const pvc = claim && objects.find((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === claim);
  if (!dataDir) problem(where, "its settings name no data-dir");
  else if (!mount) problem(where, `nothing is mounted at its data-dir ${dataDir}`);
  else if (!pvc) problem(where, `its data-dir ${dataDir} is not on a PersistentVolumeClaim of the overlay`);
  else if (!(pvc.spec.accessModes ?? []).includes("ReadWriteMany")) problem(where, `its data-dir is on ${claim}, which is not ReadWriteMany`);
  if (front.spec.volumeClaimTemplates?.length) problem(where, "per-replica volumes: the replicas must share one");
  for (const other of objects.filter((o) => podSpecOf(o) && o !== front)) {
    if ((podSpecOf(other).volumes ?? []).some((v) => claim && v.persistentVolumeClaim?.claimName === claim)) problem(where, `its data volume ${claim} is mounted by ${other.kind}/${other.metadata.name} too`);
  }
  // Disruptions and updates take one replica at a time, and never all.
  const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget" && selects(o.spec.selector.matchLabels, front.spec.template.metadata.labels));
  if (pdbs.length !== 1) problem(where, `${pdbs.length} PodDisruptionBudgets select it, not 1`);
  for (const pdb of pdbs) {
    const { minAvailable: min, maxUnavailable: max } = pdb.spec;
    const allowed = max !== undefined ? Number(max) : replicas - Number(min);
    if (!(allowed >= 1 && allowed < replicas)) problem(`${name}: PodDisruptionBudget/${pdb.metadata.name}`, `lets ${allowed} of ${replicas} front replicas go at once (1 to ${replicas - 1} is right)`);
  }
  const rolling = front.spec.strategy?.rollingUpdate;
  if ((front.spec.strategy?.type ?? "RollingUpdate") !== "RollingUpdate") problem(where, "its update strategy is not RollingUpdate");
  if (Number(rolling?.maxUnavailable ?? 1) > 1 || String(rolling?.maxUnavailable ?? "").endsWith("%")) problem(where, "a rolling update may stop more than one replica at once");
  const spreads = (spec.topologySpreadConstraints ?? []).some((t) => t.topologyKey === "kubernetes.io/hostname" && selects(t.labelSelector?.matchLabels, front.spec.template.metadata.labels));
  const anti = [...(spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []), ...(spec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p) => p.podAffinityTerm)].some(
    (t) => t.topologyKey === "kubernetes.io/hostname" && selects(t.labelSelector?.matchLabels, front.spec.template.metadata.labels),
  );
  if (!spreads && !anti) problem(where, "nothing spreads its replicas over nodes (topologySpreadConstraints or podAntiAffinity on kubernetes.io/hostname)");
  // The base front's probes and grace period.
  const baseFront = base?.find((o) => podSpecOf(o) && o.metadata.labels?.["app.kubernetes.io/component"] === "front");
  if (baseFront) {
    const bc = podSpecOf(baseFront).containers[0];
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      if (JSON.stringify(c[probe]) !== JSON.stringify(bc[probe])) problem(where, `its ${probe} is not the base front's`);
    }
    if ((spec.terminationGracePeriodSeconds ?? 30) !== (podSpecOf(baseFront).terminationGracePeriodSeconds ?? 30)) problem(where, "its terminationGracePeriodSeconds is not the base front's");
  }
  // Workers reach a replica through the ClusterIP Service their settings
  // name, which spreads connections over every ready replica.
  for (const w of objects.filter((o) => podSpecOf(o) && o.metadata.labels?.["app.kubernetes.io/component"] === "worker")) {
    const wc = podSpecOf(w).containers[0];
    const [service, port] = String(configOf(objects, podSpecOf(w), wc).front ?? "").split(":");
    const s = objects.find((o) => o.kind === "Service" && o.metadata.name === service);
    if (!s) problem(`${name}: ${w.kind}/${w.metadata.name}`, `its settings' front ${service} is no Service`);
    else {
      if (s.spec.clusterIP === "None" || s.spec.sessionAffinity === "ClientIP" || s.spec.publishNotReadyAddresses) problem(`${name}: Service/${s.metadata.name}`, "workers' Service is not a plain ClusterIP over ready replicas");
      if (!selects(s.spec.selector, front.spec.template.metadata.labels)) problem(`${name}: Service/${s.metadata.name}`, "does not select the front replicas");
      const sp = s.spec.ports.find((p) => String(p.port) === port);
      if (!sp || ((c.ports ?? []).find((p) => p.name === sp.targetPort)?.containerPort ?? sp.targetPort) !== (c.ports ?? []).find((p) => p.name === "worker")?.containerPort) {
        problem(`${name}: Service/${s.metadata.name}`, `port ${port} does not reach the front's worker port`);
      }
    }
  }
}

// The checks a schema does not make, on one rendered overlay.
function checkOverlay(name, objects, examples = [], base = null) {
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const workloads = objects.filter(podSpecOf);
  const names = new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`));
  // Only cpu-dev ships the tokens Secret; elsewhere the operator creates it.
  const external = new Set(name === "cpu-dev" ? [] : ["Secret/restyle-tokens"]);
  for (const [, o] of examples) external.add(`${o.kind}/${o.metadata?.name}`);

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
      const defined = new Set();
      const undefinedRefs = (text) => [...String(text).matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]).filter((v) => !defined.has(v));
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.resourceFieldRef;
        if (ref && !c.resources?.limits?.[ref.resource.replace(/^limits\./, "")]) problem(cw, `env ${e.name}: no ${ref.resource} set`);
        const secret = e.valueFrom?.secretKeyRef;
        if (secret && !secret.optional) {
          const rendered = objects.find((o) => o.kind === "Secret" && o.metadata.name === secret.name);
          if (rendered && !secretKeys(rendered).has(secret.key)) problem(cw, `env ${e.name}: Secret ${secret.name} has no key ${secret.key}`);
          if (!rendered && !external.has(`Secret/${secret.name}`)) problem(cw, `env ${e.name}: no Secret ${secret.name}`);
        }
        // The kubelet leaves a $(VAR) it does not know as it is.
        for (const v of undefinedRefs(e.value ?? "")) problem(cw, `env ${e.name}: $(${v}) is not set before it`);
        defined.add(e.name);
      }
      for (const a of [...(c.command ?? []), ...(c.args ?? [])]) {
        for (const v of undefinedRefs(a)) problem(cw, `argument ${a}: $(${v}) is not set`);
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
  // Every front replica reports the database's adaptation queue: summed over
  // replicas it would count each job once per replica.
  const queries = [
    ...byKind("PrometheusRule").flatMap((r) => r.spec.groups.flatMap((g) => g.rules.map((x) => [`PrometheusRule/${r.metadata.name}`, x.expr]))),
    ...byKind("ScaledObject").flatMap((o) => o.spec.triggers.map((t) => [`ScaledObject/${o.metadata.name}`, t.metadata?.query ?? ""])),
    ...byKind("ConfigMap").flatMap((m) => Object.values(m.data ?? {}).map((d) => [`ConfigMap/${m.metadata.name}`, d])),
  ];
  for (const [what, q] of queries) {
    if (/sum\s*(by\s*\([^)]*\)\s*)?\(\s*restyle_jobs_queued\s*(\{\s*lane\s*=\s*\\?"adaptation\\?"\s*\})?\s*\)/.test(String(q))) {
      problem(`${name}: ${what}`, "sums restyle_jobs_queued over front replicas (each reports the whole adaptation queue: max)");
    }
  }
  // One front on SQLite, or several on PostgreSQL (overlays/replicated).
  const fronts = workloads.filter((w) => w.metadata.labels?.["app.kubernetes.io/component"] === "front");
  if (fronts.length !== 1) problem(name, `${fronts.length} front workloads, not 1`);
  for (const front of fronts) {
    if (front.kind === "Deployment" || (front.spec.replicas ?? 1) > 1) checkReplicatedFront(name, objects, front, examples, base);
  }
  if (name === "replicated" && !fronts.some((f) => f.kind === "Deployment" && f.spec.replicas >= 2)) problem(name, "its front is not a Deployment of 2 replicas or more");
  // Front and workers of one release go together.
  const tags = new Set(workloads.flatMap((w) => podSpecOf(w).containers.map((c) => c.image.split(":")[1] ?? "latest")));
  if (tags.size > 1) problem(name, `its images have different tags (${[...tags].join(", ")})`);
}

// What the binaries must agree with: per workload, its container's args,
// the settings file its --config names (from the ConfigMap), its ports and
// probes; and the Services, Secrets and Deployments' names.
function contractOf(objects, examples = []) {
  const configMaps = Object.fromEntries(objects.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o.data ?? {}]));
  const secrets = Object.fromEntries(
    objects.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, Object.fromEntries(Object.entries(o.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]))]),
  );
  // The operator's Secrets, as the overlay's examples show them.
  const examples_ = Object.fromEntries(examples.filter(([, o]) => o.kind === "Secret").map(([, o]) => [o.metadata.name, secretData(o)]));
  const workloads = {};
  for (const w of objects.filter(podSpecOf)) {
    const spec = podSpecOf(w);
    const c = spec.containers[0];
    const mounts = {};
    for (const m of c.volumeMounts ?? []) {
      const v = (spec.volumes ?? []).find((v) => v.name === m.name);
      mounts[m.mountPath] = v?.configMap
        ? { configMap: v.configMap.name }
        : v?.secret
          ? { secret: v.secret.secretName }
          : v?.persistentVolumeClaim
            ? { volume: m.name, claim: v.persistentVolumeClaim.claimName }
            : { volume: m.name };
    }
    workloads[w.metadata.labels["app.kubernetes.io/component"]] = {
      kind: w.kind,
      name: w.metadata.name,
      replicas: w.spec.replicas ?? 1,
      args: c.args ?? [],
      env: Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? (e.valueFrom?.resourceFieldRef ? String(quantity(c.resources.limits[e.valueFrom.resourceFieldRef.resource.replace(/^limits\./, "")])) : "")])),
      // The order the kubelet sets them in ($(VAR) sees only those before).
      envOrder: (c.env ?? []).map((e) => e.name),
      // Values from elsewhere: {secret, key} or {field} (the downward API).
      envRefs: Object.fromEntries(
        (c.env ?? [])
          .filter((e) => e.valueFrom?.secretKeyRef || e.valueFrom?.fieldRef)
          .map((e) => [e.name, e.valueFrom.secretKeyRef ? { secret: e.valueFrom.secretKeyRef.name, key: e.valueFrom.secretKeyRef.key } : { field: e.valueFrom.fieldRef.fieldPath }]),
      ),
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
  return { workloads, configMaps, secrets, exampleSecrets: examples_, services };
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
let baseObjects = null;
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
  if (name === "base") baseObjects = objects;
  for (const o of objects) await validate(`${name}: ${o.kind}/${o.metadata?.name}`, o);
  const examples = examplesOf(dir);
  for (const [file, o] of examples) await validate(`${name}: ${file}: ${o.kind}/${o.metadata?.name}`, o);
  checkOverlay(name, objects, examples, baseObjects);
  checkRules(name, objects, tmp);
  contract[name] = contractOf(objects, examples);
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
