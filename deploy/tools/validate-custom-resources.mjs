// Checks custom resources (a JSON array of objects on stdin) against the
// OpenAPI schemas of their CRDs, as published by @kubernetes-models (built
// from Istio's and the Prometheus Operator's own CRDs): types, enums and
// required fields. A kind without a schema here is an error, not a pass.
// Prints one line per problem; exits 1 if there is any.
const packages = {
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
  'security.istio.io': '@kubernetes-models/istio',
  'networking.istio.io': '@kubernetes-models/istio',
  'telemetry.istio.io': '@kubernetes-models/istio',
};

let input = '';
for await (const chunk of process.stdin) input += chunk;
const problems = [];
for (const resource of JSON.parse(input)) {
  const { apiVersion = '', kind = '' } = resource;
  const name = `${kind} ${resource.metadata?.name ?? '(no name)'}`;
  const [group, version] = apiVersion.split('/');
  const pkg = packages[group];
  if (!pkg || !version) {
    problems.push(`${name}: no schema for ${apiVersion}`);
    continue;
  }
  let Model;
  try {
    Model = (await import(`${pkg}/${group}/${version}/${kind}`))[kind];
  } catch (e) {
    problems.push(`${name}: no schema for ${apiVersion} ${kind} (${e.code ?? e.message})`);
    continue;
  }
  try {
    new Model(resource).validate();
  } catch (e) {
    problems.push(`${name}: ${e.message}`);
  }
}
for (const p of problems) console.log(p);
process.exit(problems.length ? 1 : 0);
