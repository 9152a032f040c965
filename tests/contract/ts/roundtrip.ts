// A frontend's view of Virel: a client generated from /api/v1/openapi.json (openapi-typescript
// types, openapi-fetch calls), compiled with `strict` and no casts, then run against a live
// Virel: inquiries, bookings and the Action Center, there and back.
//
//   VIREL_URL=http://127.0.0.1:3000 VIREL_EMAIL=admin@virel.com VIREL_PASSWORD=password123 node dist/roundtrip.js
import createClient from "openapi-fetch";
import type { components, paths } from "./virel.js";

type Inquiry = components["schemas"]["InquiryOut"];
type Booking = components["schemas"]["BookingOut"];

function check(ok: boolean, what: string): void {
  if (!ok) {
    throw new Error(`round trip failed: ${what}`);
  }
}

function must<T>(value: T | undefined, what: string, error?: unknown): T {
  if (value === undefined) {
    throw new Error(`round trip failed: ${what}: ${JSON.stringify(error)}`);
  }
  return value;
}

const base = process.env.VIREL_URL ?? "http://127.0.0.1:3000";
const api = createClient<paths>({ baseUrl: `${base}/api/v1` });

const login = await api.POST("/auth/login", {
  body: { email: process.env.VIREL_EMAIL ?? "admin@virel.com", password: process.env.VIREL_PASSWORD ?? "password123" },
});
const tokens = must(login.data, "login", login.error);
const headers = { Authorization: `Bearer ${tokens.access_token}` };

// An inquiry with a new client, read back.
const suffix = String(Date.now() % 1_000_000).padStart(6, "0");
const created = await api.POST("/inquiries", {
  headers,
  body: {
    source: "web",
    client: { name: "Round Trip", phone: `+44770090${suffix.slice(0, 4)}` },
    requested_start: "2027-03-14T19:00:00Z",
    duration_minutes: 120,
    location: "London",
    budget: { amount: 150000, currency: "GBP" },
  },
});
const inquiry: Inquiry = must(created.data, "create inquiry", created.error);
const read = await api.GET("/inquiries/{id}", { headers, params: { path: { id: inquiry.id } } });
const again: Inquiry = must(read.data, "read inquiry", read.error);
check(again.id === inquiry.id && again.status === "new", "the inquiry reads back as created");
const next: Inquiry["status"] | undefined = again.allowed_transitions.includes("qualified") ? "qualified" : undefined;
check(next === "qualified", "a new inquiry may be qualified");

// A booking for that client with the first model, moved to pending.
const models = await api.GET("/models", { headers, params: { query: { status: "active", limit: 1 } } });
const model = must(must(models.data, "list models", models.error).items[0], "an active model");
const made = await api.POST("/bookings", {
  headers,
  body: {
    client_id: again.client_id,
    model_id: model.id,
    start_at: `2027-0${1 + (Number(suffix) % 9)}-1${Number(suffix) % 10}T19:00:00Z`,
    duration_minutes: 120,
    location: "London, Mayfair",
    price: { amount: 120000, currency: "GBP" },
    deposit: null,
  },
});
const booking: Booking = must(made.data, "create booking", made.error);
check(booking.status === "draft" && booking.client_id === again.client_id, "a new booking is a draft for that client");
const moved = await api.POST("/bookings/{id}/status", {
  headers,
  params: { path: { id: booking.id } },
  body: { status: "pending", version: booking.version },
});
const pending: Booking = must(moved.data, "move booking", moved.error);
check(pending.status === "pending" && pending.version === booking.version + 1, "the booking moved to pending");

// A refusal has the documented error shape.
const refused = await api.POST("/bookings/{id}/status", {
  headers,
  params: { path: { id: booking.id } },
  body: { status: "completed" },
});
check(refused.response.status === 409 && refused.error?.error.code === "invalid_transition", "a refused move is 409");

// The Action Center: items and counts, typed.
const center = await api.GET("/action-center", { headers, params: { query: { kind: "task" } } });
const list = must(center.data, "action center", center.error);
check(list.counts.total >= list.items.length, "counts cover the items");
for (const item of list.items) {
  check(item.kind === "task", "the filter holds");
  const due: string | null | undefined = item.due_at;
  void due;
}

console.log(
  JSON.stringify({ inquiry: inquiry.id, booking: booking.id, action_center_items: list.items.length, ok: true }),
);
