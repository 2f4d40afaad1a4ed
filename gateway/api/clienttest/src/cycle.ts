// The customer's cycle, run by a client generated from the gateway's served
// OpenAPI 3 document (openapi-typescript writes fund-api.d.ts from it,
// openapi-fetch calls the API with those types). It compiles only if the
// document's paths, parameters and schemas are the ones used here, and it
// passes only if the answers are what the document says.
//
//   FUND_API_URL  the gateway, e.g. http://127.0.0.1:8080 (fundd dev prints it)
//   FUND_TOKEN    an admin token (fundd dev prints one; fundctl token --admin)
//   FUND_RUN_ID   optional: makes the request ids of this run unique (default: the time)
//
// Each step is one function of `steps`, run in order against one customer;
// a step reads and extends the run's state. The rest of the money cycle
// (advance the test clock, settle, fast and standard redeem, pay, withdraw)
// is more functions appended to `steps`.
import createClient from "openapi-fetch";
import type { components, paths } from "./fund-api.js";

type Schemas = components["schemas"];
type Order = Schemas["Order"];
type Holdings = Schemas["Holdings"];
type Status = Schemas["Status"];
type ErrorInfo = Schemas["ErrorInfo"];
type Detail = Status["details"][number];

function env(name: string): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set`);
  }
  return v;
}

const api = createClient<paths>({
  baseUrl: env("FUND_API_URL"),
  headers: { Authorization: `Bearer ${env("FUND_TOKEN")}` },
});
const runId = process.env.FUND_RUN_ID || Date.now().toString(36);

/** The state of one run: what the steps made so far. */
interface Run {
  customerId: string;
  orders: Order[];
}

/** A step of the cycle: it calls the API and checks the answers. */
interface Step {
  name: string;
  run: (r: Run) => Promise<void>;
}

function key(step: string): string {
  return `clienttest-${runId}-${step}`;
}

function expect(cond: boolean, what: string, got: unknown): void {
  if (!cond) {
    throw new Error(`${what}; got ${JSON.stringify(got)}`);
  }
}

/** ok returns data of a successful answer, or throws with the error body. */
function ok<T>(call: string, res: { data?: T; error?: Status; response: Response }): T {
  if (res.data === undefined) {
    throw new Error(`${call}: HTTP ${res.response.status}: ${JSON.stringify(res.error)}`);
  }
  return res.data;
}

function isErrorInfo(d: Detail): d is ErrorInfo {
  return d["@type"] === "type.googleapis.com/google.rpc.ErrorInfo";
}

async function holdings(r: Run): Promise<Holdings> {
  return ok(
    "GetHoldings",
    await api.GET("/v1/customers/{customer_id}/holdings", { params: { path: { customer_id: r.customerId } } }),
  );
}

/** An order call of FundService: top-up, subscribe and withdraw share this shape. */
async function order(
  path: "/v1/customers/{customer_id}/topups" | "/v1/customers/{customer_id}/subscriptions",
  r: Run,
  step: string,
  amount: string,
) {
  return api.POST(path, {
    params: { path: { customer_id: r.customerId }, header: { "Idempotency-Key": key(step) } },
    body: { amount },
  });
}

const openCustomer: Step = {
  name: "open a customer",
  async run(r) {
    const c = ok(
      "OpenCustomer",
      await api.POST("/v1/customers", {
        params: { header: { "Idempotency-Key": key("open") } },
        body: { name: `Client test ${runId}` },
      }),
    );
    expect(c.status === "ACTIVE" && !!c.id, "a new customer is ACTIVE with an id", c);
    r.customerId = c.id!;
  },
};

const topUp: Step = {
  name: "top up 100.00",
  async run(r) {
    const o = ok("TopUp", await order("/v1/customers/{customer_id}/topups", r, "topup", "100.00"));
    expect(o.kind === "TOP_UP" && o.status === "COMPLETED" && o.amount === "100.00", "a completed top-up of 100.00", o);
    // The same Idempotency-Key again: the original order, applied once.
    const again = ok("TopUp retry", await order("/v1/customers/{customer_id}/topups", r, "topup", "100.00"));
    expect(again.request_id === o.request_id && again.created_at === o.created_at, "a retry gets the original order", again);
    const h = await holdings(r);
    expect(h.cash === "100.00", "cash 100.00 after the top-up and its retry", h);
    r.orders.push(o);
  },
};

const subscribe: Step = {
  name: "subscribe 60.00",
  async run(r) {
    const o = ok("Subscribe", await order("/v1/customers/{customer_id}/subscriptions", r, "subscribe", "60.00"));
    expect(o.kind === "SUBSCRIBE" && o.status === "PENDING" && !!o.confirm_date, "a pending subscription with a confirm date", o);
    r.orders.push(o);
  },
};

const overdrawRefused: Step = {
  name: "subscribe more than the cash: refused",
  async run(r) {
    const res = await order("/v1/customers/{customer_id}/subscriptions", r, "overdraw", "1000.00");
    expect(res.response.status === 422 && res.error !== undefined, "HTTP 422 with an error body", res.error);
    const info = res.error!.details.find(isErrorInfo);
    expect(info?.reason === "INSUFFICIENT_FUNDS" && info.domain === "fund.v1", "ErrorInfo INSUFFICIENT_FUNDS", res.error);
  },
};

const readHoldings: Step = {
  name: "read holdings",
  async run(r) {
    const h = await holdings(r);
    expect(h.customer_id === r.customerId && h.status === "ACTIVE", "the customer's holdings", h);
    expect(h.cash === "40.00" && h.shares_pending === "60.00" && h.shares === "0.00", "cash 40.00, 60.00 shares pending", h);
  },
};

export const steps: Step[] = [openCustomer, topUp, subscribe, overdrawRefused, readHoldings];

async function main(): Promise<void> {
  const r: Run = { customerId: "", orders: [] };
  for (const s of steps) {
    await s.run(r);
    console.log(`ok   ${s.name}`);
  }
  console.log(`cycle done: customer ${r.customerId}, ${r.orders.length} orders`);
}

main().catch((e: unknown) => {
  console.error(`FAIL ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
