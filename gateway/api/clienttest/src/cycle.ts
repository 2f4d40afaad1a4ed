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
// The whole money cycle needs a fresh sandbox (fundd dev --test-clock; the
// balances checked to the cent are the only customer's, and the dates from
// the clock's day on must be unsettled): open, top up, subscribe, advance
// the test clock past the confirm date and six days more, settle each day
// (income, the 7-day yield), fast redeem, pay a merchant, standard redeem,
// advance past its payout, settle, withdraw.
//
// Each step is one function of `steps`, run in order against one customer;
// a step reads and extends the run's state.
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
  /** The first date to settle (the clock's business date at the start), then the one after the last settled. */
  nextSettle: string;
  /** The holdings after the first settlements. */
  settled?: Holdings;
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

/** cents parses a decimal amount with two places ("1234.50") into integer cents. */
function cents(amount: string | undefined): number {
  const m = /^(-?)(\d+)\.(\d{2})$/.exec(amount ?? "");
  if (!m) {
    throw new Error(`not an amount with two decimals: ${JSON.stringify(amount)}`);
  }
  return (m[1] ? -1 : 1) * (Number(m[2]) * 100 + Number(m[3]));
}

/** addDays adds n calendar days to a date YYYY-MM-DD. */
function addDays(date: string, n: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * retried sends a call again while it answers 503 (right after a settlement
 * the ledger takes its shard back for a moment; the same Idempotency-Key
 * makes a retry safe), after a quarter of its Retry-After, at most 30 times.
 */
async function retried<R extends { response: Response }>(call: () => Promise<R>): Promise<R> {
  for (let attempt = 0; ; attempt++) {
    const res = await call();
    if (res.response.status !== 503 || attempt >= 30) {
      return res;
    }
    await sleep(250 * Math.max(Number(res.response.headers.get("Retry-After")) || 1, 1));
  }
}

function isErrorInfo(d: Detail): d is ErrorInfo {
  return d["@type"] === "type.googleapis.com/google.rpc.ErrorInfo";
}

async function holdings(r: Run): Promise<Holdings> {
  return ok(
    "GetHoldings",
    await retried(() =>
      api.GET("/v1/customers/{customer_id}/holdings", { params: { path: { customer_id: r.customerId } } }),
    ),
  );
}

/** An order call of FundService: top-up, subscribe and withdraw share this shape. */
async function order(
  path:
    | "/v1/customers/{customer_id}/topups"
    | "/v1/customers/{customer_id}/subscriptions"
    | "/v1/customers/{customer_id}/withdrawals",
  r: Run,
  step: string,
  amount: string,
) {
  return retried(() =>
    api.POST(path, {
      params: { path: { customer_id: r.customerId }, header: { "Idempotency-Key": key(step) } },
      body: { amount },
    }),
  );
}

async function redeem(r: Run, step: string, amount: string, mode: "FAST" | "STANDARD") {
  return retried(() =>
    api.POST("/v1/customers/{customer_id}/redemptions", {
      params: { path: { customer_id: r.customerId }, header: { "Idempotency-Key": key(step) } },
      body: { amount, mode },
    }),
  );
}

/** advanceTo moves the test clock to 15:30 (China Standard Time) on date, past its cut-off. */
async function advanceTo(date: string, step: string) {
  const to = `${date}T15:30:00+08:00`;
  const c = ok(
    "AdvanceClock",
    await api.POST("/v1/admin/clock:advance", {
      params: { header: { "Idempotency-Key": key(step) } },
      body: { to },
    }),
  );
  expect(c.test_clock === true && c.now === to && c.settleable_through === date, `the test clock at ${to}`, c);
}

/** settleThrough settles every date from r.nextSettle through last, in order, at 0.65 CNY per 10,000 shares. */
async function settleThrough(r: Run, last: string) {
  let s: Schemas["Settlement"] | undefined;
  for (let d = r.nextSettle; d <= last; d = addDays(d, 1)) {
    const date = d;
    s = ok(
      `RunSettlement ${date}`,
      await retried(() =>
        api.POST("/v1/admin/settlements", {
          params: { header: { "Idempotency-Key": key(`settle-${date}`) } },
          body: { date, income_per_10k: "0.6500" },
        }),
      ),
    );
    expect(s.status === "COMPLETED" && s.date === date, `${date} settled`, s);
  }
  r.nextSettle = addDays(last, 1);
  return s;
}

const openCustomer: Step = {
  name: "open a customer",
  async run(r) {
    const clock = ok("GetClock", await api.GET("/v1/admin/clock"));
    expect(clock.test_clock === true && !!clock.business_date, "a sandbox on a test clock", clock);
    r.nextSettle = clock.business_date!;
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
  name: "top up 20000.00",
  async run(r) {
    const o = ok("TopUp", await order("/v1/customers/{customer_id}/topups", r, "topup", "20000.00"));
    expect(o.kind === "TOP_UP" && o.status === "COMPLETED" && o.amount === "20000.00", "a completed top-up of 20000.00", o);
    // The same Idempotency-Key again: the original order, applied once.
    const again = ok("TopUp retry", await order("/v1/customers/{customer_id}/topups", r, "topup", "20000.00"));
    expect(again.request_id === o.request_id && again.created_at === o.created_at, "a retry gets the original order", again);
    const h = await holdings(r);
    expect(h.cash === "20000.00", "cash 20000.00 after the top-up and its retry", h);
    r.orders.push(o);
  },
};

const subscribe: Step = {
  name: "subscribe 15000.00",
  async run(r) {
    const o = ok("Subscribe", await order("/v1/customers/{customer_id}/subscriptions", r, "subscribe", "15000.00"));
    expect(o.kind === "SUBSCRIBE" && o.status === "PENDING" && !!o.confirm_date, "a pending subscription with a confirm date", o);
    r.orders.push(o);
  },
};

const overdrawRefused: Step = {
  name: "subscribe more than the cash: refused",
  async run(r) {
    const res = await order("/v1/customers/{customer_id}/subscriptions", r, "overdraw", "100000.00");
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
    expect(h.cash === "5000.00" && h.shares_pending === "15000.00" && h.shares === "0.00", "cash 5000.00, 15000.00 shares pending", h);
  },
};

const settleAWeek: Step = {
  name: "advance past the confirm date and six days more, settle each day: income and the 7-day yield",
  async run(r) {
    const confirm = r.orders.find((o) => o.kind === "SUBSCRIBE")!.confirm_date!;
    const last = addDays(confirm, 5);
    await advanceTo(last, "clock-week");
    const s = await settleThrough(r, last);
    expect(!!s?.seven_day_yield, "the last run publishes a 7-day yield", s);
    const h = await holdings(r);
    // Six days of income at 0.65 per 10,000 on 15,000 shares and more: 0.97 a day.
    expect(h.shares === "15005.82" && h.cumulative_income === "5.82" && h.yesterday_income === "0.97", "15005.82 shares after six days' income", h);
    expect(h.cash === "5000.00" && h.shares_pending === "0.00", "the subscription confirmed", h);
    expect(h.seven_day_yield === s!.seven_day_yield && h.seven_day_yield === "2.401", "the 7-day yield in the holdings", h);
    r.settled = h;
  },
};

const fastRedeem: Step = {
  name: "fast redeem 1000.00",
  async run(r) {
    const o = ok("Redeem FAST", await redeem(r, "fast", "1000.00", "FAST"));
    expect(o.kind === "FAST_REDEEM" && o.status === "COMPLETED", "a completed fast redemption", o);
    const h = await holdings(r);
    expect(h.cash === "6000.00" && h.fast_redeem_left_today === "9000.00", "cash at once, 9000.00 left of the day's cap", h);
    r.orders.push(o);
  },
};

const payMerchant: Step = {
  name: "register merchant 7 and pay it 500.00",
  async run(r) {
    const m = ok(
      "RegisterMerchant",
      await api.POST("/v1/admin/merchants", {
        params: { header: { "Idempotency-Key": key("merchant") } },
        body: { merchant_id: "7" },
      }),
    );
    expect(m.merchant_id === "7", "merchant 7 registered", m);
    const o = ok(
      "Pay",
      await retried(() =>
        api.POST("/v1/customers/{customer_id}/payments", {
          params: { path: { customer_id: r.customerId }, header: { "Idempotency-Key": key("pay") } },
          body: { amount: "500.00", merchant_id: "7" },
        }),
      ),
    );
    expect(o.kind === "PAY" && o.status === "COMPLETED" && o.merchant_id === "7", "a completed payment to merchant 7", o);
    r.orders.push(o);
  },
};

const standardRedeem: Step = {
  name: "standard redeem 3000.00, advance past its payout, settle",
  async run(r) {
    const o = ok("Redeem STANDARD", await redeem(r, "standard", "3000.00", "STANDARD"));
    expect(o.kind === "STANDARD_REDEEM" && o.status === "PENDING" && !!o.confirm_date, "a pending standard redemption", o);
    let h = await holdings(r);
    expect(h.shares_redeeming === "3000.00" && h.cash === "6000.00", "3000.00 shares awaiting payout", h);
    await advanceTo(o.confirm_date!, "clock-payout");
    await settleThrough(r, o.confirm_date!);
    h = await holdings(r);
    expect(h.cash === "9000.00" && h.shares_redeeming === "0.00", "the redemption paid in cash", h);
    r.orders.push(o);
  },
};

const withdraw: Step = {
  name: "withdraw 8000.00: balances to the cent",
  async run(r) {
    const o = ok("Withdraw", await order("/v1/customers/{customer_id}/withdrawals", r, "withdraw", "8000.00"));
    expect(o.kind === "WITHDRAW" && o.status === "COMPLETED", "a completed withdrawal", o);
    const h = await holdings(r);
    expect(h.cash === "1000.00", "cash 20000 - 15000 + 1000 + 3000 - 8000 = 1000.00", h);
    // Shares: what was subscribed, plus every day's income, less what was redeemed and paid.
    const want = cents("15000.00") + cents(h.cumulative_income) - cents("4500.00");
    expect(cents(h.shares) === want && cents(h.cumulative_income) > cents(r.settled!.cumulative_income),
      "shares = 15000.00 + income - 4500.00, with income since the first settlements", h);
    r.orders.push(o);
  },
};

export const steps: Step[] = [
  openCustomer,
  topUp,
  subscribe,
  overdrawRefused,
  readHoldings,
  settleAWeek,
  fastRedeem,
  payMerchant,
  standardRedeem,
  withdraw,
];

async function main(): Promise<void> {
  const r: Run = { customerId: "", orders: [], nextSettle: "" };
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
