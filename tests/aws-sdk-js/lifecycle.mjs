// The whole Lambda life cycle with @aws-sdk/client-lambda (v3, pinned in package-lock.json)
// against minilambda's AWS control plane — the same steps as tests/integration/aws_clients_e2e.py
// runs with boto3 and the AWS CLI. Run by that test (which does `npm ci` and copies this file
// next to node_modules); it passes the endpoint, a SigV4 key of a fresh namespace, and the
// ZIPs (ML_ZIPS/<mark>.zip, each app.py answering {"mark","stage","mem"}). Errors are asserted
// as the SDK's exception classes (instanceof and err.name). Prints "ok - "/"not ok - " lines;
// exits 1 when a check failed.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  LambdaClient, CreateFunctionCommand, GetFunctionCommand, GetFunctionConfigurationCommand,
  ListFunctionsCommand, paginateListFunctions, UpdateFunctionCodeCommand,
  UpdateFunctionConfigurationCommand, PublishVersionCommand, ListVersionsByFunctionCommand,
  CreateAliasCommand, GetAliasCommand, UpdateAliasCommand, DeleteAliasCommand, ListAliasesCommand,
  InvokeCommand, DeleteFunctionCommand, GetAccountSettingsCommand, waitUntilFunctionExists, waitUntilFunctionActiveV2, waitUntilFunctionUpdatedV2,
  ResourceNotFoundException, ResourceConflictException, InvalidParameterValueException,
} from "@aws-sdk/client-lambda";

const L = "aws-sdk-js";
const env = process.env;
const RUNTIME = env.ML_RUNTIME, ROLE = env.ML_ROLE, REGION = env.AWS_REGION;
const SPLIT_N = Number(env.ML_SPLIT_N), SPLIT_W = Number(env.ML_SPLIT_W), SPLIT_TOL = Number(env.ML_SPLIT_TOL);
const FN = "orders", EXTRAS = ["orders-extra-a", "orders-extra-b"];
const client = new LambdaClient({ endpoint: env.ML_ENDPOINT, region: REGION, maxAttempts: 1 });
let failures = 0;

class Stop extends Error {}

const zip = (mark) => readFileSync(join(env.ML_ZIPS, `${mark}.zip`));
const send = (Cmd, input) => client.send(new Cmd(input));
const short = (x) => {
  try { return JSON.stringify(x, (k, v) => (k === "$metadata" ? undefined : v)).slice(0, 300); } catch { return String(x); }
};

function check(what, cond, detail) {
  console.log(`${cond ? "ok" : "not ok"} - ${L}: ${what}${cond ? "" : `  # ${short(detail)}`}`);
  if (!cond) failures++;
  return cond;
}

// must: a step the rest depends on; stops the life cycle when it throws or is falsy.
async function must(what, fn) {
  let r;
  try { r = await fn(); } catch (e) {
    check(what, false, `${e.name}: ${e.message}`);
    throw new Stop(what);
  }
  if (!check(what, Boolean(r), r)) throw new Stop(what);
  return r;
}

async function tryCheck(what, fn, cond) {
  try {
    const r = await fn();
    return check(what, cond(r), r);
  } catch (e) {
    return check(what, false, `${e.name}: ${e.message}`);
  }
}

// error: the command throws an instance of Cls whose name is Cls's (the SDK maps
// x-amzn-ErrorType to the class).
async function error(what, Cls, Cmd, input) {
  try {
    const r = await send(Cmd, input);
    return check(what, false, `no error: ${short(r)}`);
  } catch (e) {
    return check(what, e instanceof Cls && e.name === Cls.name, `${e.name}: ${e.message}`);
  }
}

async function invoke(name, qualifier) {
  const r = await send(InvokeCommand, { FunctionName: name, Qualifier: qualifier, Payload: Buffer.from("{}") });
  const text = Buffer.from(r.Payload ?? []).toString();
  return { ver: r.ExecutedVersion, doc: text ? JSON.parse(text) : null, err: r.FunctionError };
}

async function marks(what, name, qualifier, mark, stage, version) {
  await tryCheck(`invoke ${what} runs ${mark} with STAGE=${stage}, ExecutedVersion ${version}`,
    () => invoke(name, qualifier),
    (r) => r.ver === version && !r.err && r.doc?.mark === mark && r.doc?.stage === stage);
}

const waiter = { client, maxWaitTime: 120, minDelay: 1, maxDelay: 2 };
const waitOk = async (w) => (await w({ ...waiter }, { FunctionName: FN })).state === "SUCCESS";

async function createAndGet() {
  const r = await must("CreateFunction (ZipFile, runtime python3.11) answers the function", () => send(CreateFunctionCommand, {
    FunctionName: FN, Runtime: RUNTIME, Role: ROLE, Handler: "app.handler", Code: { ZipFile: zip("v1") },
    Description: "life cycle", Timeout: 10, MemorySize: 128, Environment: { Variables: { STAGE: "one" } } }));
  const arn = r.FunctionArn ?? "";
  check(`CreateFunction: FunctionArn arn:aws:lambda:${REGION}:<12 digits>:function:${FN}, State Pending|Active`,
    new RegExp(`^arn:aws:lambda:${REGION}:\\d{12}:function:${FN}$`).test(arn) &&
    ["Pending", "Active"].includes(r.State) && r.Runtime === RUNTIME, r);
  for (const x of EXTRAS) {
    await must(`CreateFunction ${x}`, () => send(CreateFunctionCommand, {
      FunctionName: x, Runtime: RUNTIME, Role: ROLE, Handler: "app.handler", Code: { ZipFile: zip(x) } }));
  }
  await error("CreateFunction of an existing name -> ResourceConflictException", ResourceConflictException,
    CreateFunctionCommand, { FunctionName: FN, Runtime: RUNTIME, Role: ROLE, Handler: "app.handler", Code: { ZipFile: zip("dup") } });
  await error("CreateFunction with runtime java21 (not installed) -> InvalidParameterValueException", InvalidParameterValueException,
    CreateFunctionCommand, { FunctionName: `${FN}-java`, Runtime: "java21", Role: ROLE, Handler: "app.handler", Code: { ZipFile: zip("dup") } });
  await must("waitUntilFunctionExists succeeds", () => waitOk(waitUntilFunctionExists));
  await must("waitUntilFunctionActiveV2 succeeds", () => waitOk(waitUntilFunctionActiveV2));
  for (const x of EXTRAS) {
    await must(`waitUntilFunctionActiveV2 for ${x}`, async () =>
      (await waitUntilFunctionActiveV2({ ...waiter }, { FunctionName: x })).state === "SUCCESS");
  }
  const g = await must("GetFunction answers Configuration and Code", () => send(GetFunctionCommand, { FunctionName: FN }));
  const cfg = g.Configuration ?? {}, loc = g.Code?.Location ?? "";
  check("GetFunction: State Active, LastUpdateStatus Successful, Version $LATEST",
    cfg.State === "Active" && cfg.LastUpdateStatus === "Successful" && cfg.Version === "$LATEST" && cfg.FunctionArn === arn, cfg);
  let served = { status: 0, body: Buffer.alloc(0) };
  try {
    const res = await fetch(loc);
    served = { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  } catch (e) {
    served.error = `${e.name}: ${e.message}`;
  }
  check("GetFunction Code.Location downloads the uploaded ZIP, no credentials",
    served.status === 200 && served.body.equals(zip("v1")), { loc, status: served.status, error: served.error });
  // AWS: CodeSha256 is the deployment package's, the one Location serves
  const sha = createHash("sha256").update(served.body).digest("base64");
  check("GetFunction CodeSha256 = base64 SHA-256 of the ZIP Code.Location serves", sha === cfg.CodeSha256, [sha, cfg.CodeSha256]);
  await tryCheck("GetFunctionConfiguration: runtime, handler, memory, timeout, env, description",
    () => send(GetFunctionConfigurationCommand, { FunctionName: FN }),
    (r) => r.Runtime === RUNTIME && r.Handler === "app.handler" && r.MemorySize === 128 && r.Timeout === 10 &&
      r.Environment?.Variables?.STAGE === "one" && r.Description === "life cycle");
  return arn;
}

async function listing() {
  const want = [FN, ...EXTRAS].sort().join(",");
  await tryCheck("ListFunctions with paginateListFunctions (pageSize 1): this namespace's 3 functions, one a page", async () => {
    const names = [], sizes = [];
    for await (const page of paginateListFunctions({ client, pageSize: 1 }, {})) {
      names.push(...page.Functions.map((f) => f.FunctionName));
      sizes.push(page.Functions.length);
    }
    return { names, sizes };
  }, (r) => r.names.sort().join(",") === want && Math.max(...r.sizes) <= 1);
  await tryCheck("ListFunctions by hand (MaxItems 2, Marker/NextMarker): the same", async () => {
    const names = [];
    let marker;
    for (let i = 0; i < 20; i++) {
      const r = await send(ListFunctionsCommand, { MaxItems: 2, Marker: marker });
      names.push(...r.Functions.map((f) => f.FunctionName));
      marker = r.NextMarker;
      if (!marker) break;
    }
    return names;
  }, (names) => names.sort().join(",") === want);
}

async function update() {
  const r = await must("UpdateFunctionCode (ZipFile v2)", () => send(UpdateFunctionCodeCommand, { FunctionName: FN, ZipFile: zip("v2") }));
  check("UpdateFunctionCode answers LastUpdateStatus InProgress|Successful", ["InProgress", "Successful"].includes(r.LastUpdateStatus), r);
  await must("waitUntilFunctionUpdatedV2 succeeds after the code update", () => waitOk(waitUntilFunctionUpdatedV2));
  await marks("$LATEST right after the waiter", FN, undefined, "v2", "one", "$LATEST");
  await must("UpdateFunctionConfiguration (memory 256, timeout 20, env, description)", () => send(UpdateFunctionConfigurationCommand, {
    FunctionName: FN, MemorySize: 256, Timeout: 20, Environment: { Variables: { STAGE: "two" } }, Description: "second" }));
  await must("waitUntilFunctionUpdatedV2 succeeds after the configuration update", () => waitOk(waitUntilFunctionUpdatedV2));
  await tryCheck("GetFunctionConfiguration shows the new memory, timeout, env, description",
    () => send(GetFunctionConfigurationCommand, { FunctionName: FN }),
    (r) => r.MemorySize === 256 && r.Timeout === 20 && r.Description === "second" && r.Environment?.Variables?.STAGE === "two");
  await tryCheck("invoke $LATEST sees the new configuration (memory 256)", () => invoke(FN),
    (r) => String(r.doc?.mem) === "256" && r.doc?.stage === "two");
}

async function publish() {
  const r = await must("PublishVersion -> version 2", () => send(PublishVersionCommand, { FunctionName: FN, Description: "v2" }));
  check("PublishVersion answers Version 2 and a qualified ARN", r.Version === "2" && (r.FunctionArn ?? "").endsWith(`:function:${FN}:2`), r);
  await tryCheck("PublishVersion with nothing changed returns version 2 again (no new version)",
    () => send(PublishVersionCommand, { FunctionName: FN }), (r) => r.Version === "2");
  await must("UpdateFunctionCode v3 ($LATEST only)", () => send(UpdateFunctionCodeCommand, { FunctionName: FN, ZipFile: zip("v3") }));
  await must("waitUntilFunctionUpdatedV2 after v3", () => waitOk(waitUntilFunctionUpdatedV2));
  await tryCheck("ListVersionsByFunction: $LATEST, 1, 2", () => send(ListVersionsByFunctionCommand, { FunctionName: FN }),
    (r) => (r.Versions ?? []).map((v) => v.Version).join(",") === "$LATEST,1,2");
  await tryCheck("GetFunctionConfiguration Qualifier=1: the snapshot (memory 128, STAGE one)",
    () => send(GetFunctionConfigurationCommand, { FunctionName: FN, Qualifier: "1" }),
    (r) => r.Version === "1" && r.MemorySize === 128 && r.Environment?.Variables?.STAGE === "one");
}

async function invokes(arn) {
  await marks("Qualifier=1", FN, "1", "v1", "one", "1");
  await marks("Qualifier=2", FN, "2", "v2", "two", "2");
  await marks("Qualifier=$LATEST", FN, "$LATEST", "v3", "two", "$LATEST");
  await marks("no qualifier", FN, undefined, "v3", "two", "$LATEST");
  await marks("alias live (-> 1)", FN, "live", "v1", "one", "1");
  await marks("by full ARN :2", `${arn}:2`, undefined, "v2", "two", "2");
  await marks("by full ARN :live", `${arn}:live`, undefined, "v1", "one", "1");
  await marks("by full unqualified ARN", arn, undefined, "v3", "two", "$LATEST");
  const partial = arn.split(":").slice(4).join(":");
  await marks("by partial ARN <account>:function:<name>:1", `${partial}:1`, undefined, "v1", "one", "1");
  await error("invoke Qualifier=99 (no such version) -> ResourceNotFoundException, no fallback", ResourceNotFoundException,
    InvokeCommand, { FunctionName: FN, Qualifier: "99" });
  await error("invoke Qualifier=nosuch (no such alias) -> ResourceNotFoundException", ResourceNotFoundException,
    InvokeCommand, { FunctionName: FN, Qualifier: "nosuch" });
}

async function split() {
  const seen = { 1: 0, 2: 0 }, wrong = [];
  const t0 = Date.now();
  let left = SPLIT_N;
  const worker = async () => { // four in flight, as a small client fleet would
    while (left-- > 0) {
      const r = await invoke(FN, "live");
      if ((r.ver === "1" || r.ver === "2") && r.doc?.mark === `v${r.ver}`) seen[r.ver]++;
      else wrong.push(r);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const share = seen[2] / SPLIT_N;
  check(`weighted alias over ${SPLIT_N} invocations: version 2 share ${share.toFixed(3)} in ${SPLIT_W} +/- ${SPLIT_TOL}, ` +
    `every ExecutedVersion matches the code that ran (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    wrong.length === 0 && Math.abs(share - SPLIT_W) <= SPLIT_TOL, { seen, wrong: wrong.slice(0, 3) });
}

async function aliases(arn) {
  const r = await must("CreateAlias live -> 1", () => send(CreateAliasCommand, {
    FunctionName: FN, Name: "live", FunctionVersion: "1", Description: "production" }));
  check(`CreateAlias answers AliasArn ${arn}:live`, r.AliasArn === `${arn}:live` && r.FunctionVersion === "1", r);
  await error("CreateAlias live again -> ResourceConflictException", ResourceConflictException,
    CreateAliasCommand, { FunctionName: FN, Name: "live", FunctionVersion: "2" });
  await error("CreateAlias to version 42 (none) -> ResourceNotFoundException", ResourceNotFoundException,
    CreateAliasCommand, { FunctionName: FN, Name: "ghost", FunctionVersion: "42" });
  await invokes(arn);
  await must(`UpdateAlias live: 1 with RoutingConfig {2: ${SPLIT_W}}`, () => send(UpdateAliasCommand, {
    FunctionName: FN, Name: "live", FunctionVersion: "1", RoutingConfig: { AdditionalVersionWeights: { 2: SPLIT_W } } }));
  await tryCheck("GetAlias live shows the weights", () => send(GetAliasCommand, { FunctionName: FN, Name: "live" }),
    (r) => r.FunctionVersion === "1" && r.RoutingConfig?.AdditionalVersionWeights?.["2"] === SPLIT_W);
  await error("UpdateAlias routing to $LATEST -> InvalidParameterValueException", InvalidParameterValueException,
    UpdateAliasCommand, { FunctionName: FN, Name: "live", RoutingConfig: { AdditionalVersionWeights: { $LATEST: 0.5 } } });
  await split();
  await must("UpdateAlias live -> 2, no routing (promote)", () => send(UpdateAliasCommand, {
    FunctionName: FN, Name: "live", FunctionVersion: "2", RoutingConfig: { AdditionalVersionWeights: {} } }));
  await marks("alias live after the promotion", FN, "live", "v2", "two", "2");
  await must("rollback: UpdateAlias live -> 1", () => send(UpdateAliasCommand, { FunctionName: FN, Name: "live", FunctionVersion: "1" }));
  await tryCheck("after the rollback 20 of 20 invocations of live run version 1", async () => {
    const runs = [];
    for (let i = 0; i < 20; i++) runs.push(await invoke(FN, "live"));
    return runs;
  }, (runs) => runs.every((r) => r.ver === "1" && r.doc?.mark === "v1"));
  await tryCheck("ListAliases: live", () => send(ListAliasesCommand, { FunctionName: FN }),
    (r) => (r.Aliases ?? []).map((a) => a.Name).join(",") === "live");
  await must("DeleteAlias live", async () => { await send(DeleteAliasCommand, { FunctionName: FN, Name: "live" }); return true; });
  await error("GetAlias live after the delete -> ResourceNotFoundException", ResourceNotFoundException,
    GetAliasCommand, { FunctionName: FN, Name: "live" });
}

async function remove() {
  await must("DeleteFunction", async () => { await send(DeleteFunctionCommand, { FunctionName: FN }); return true; });
  await error("GetFunction after the delete -> ResourceNotFoundException", ResourceNotFoundException,
    GetFunctionCommand, { FunctionName: FN });
  await error("invoke after the delete -> ResourceNotFoundException", ResourceNotFoundException,
    InvokeCommand, { FunctionName: FN });
  for (const x of EXTRAS) {
    await tryCheck(`DeleteFunction ${x}`, () => send(DeleteFunctionCommand, { FunctionName: x }), () => true);
  }
  await tryCheck("ListFunctions after the deletes: empty namespace", () => send(ListFunctionsCommand, {}),
    (r) => (r.Functions ?? []).length === 0);
  await tryCheck("GetAccountSettings answers AccountLimit and AccountUsage", () => send(GetAccountSettingsCommand, {}),
    (r) => typeof r.AccountLimit === "object" && typeof r.AccountUsage === "object");
}

try {
  const arn = await createAndGet();
  await must("PublishVersion right after create -> version 1",
    async () => (await send(PublishVersionCommand, { FunctionName: FN })).Version === "1");
  await listing();
  await update();
  await publish();
  await aliases(arn);
  await remove();
} catch (e) {
  if (!(e instanceof Stop)) throw e;
  check("life cycle completed", false, `stopped at: ${e.message}`);
}
process.exit(failures ? 1 : 0);
