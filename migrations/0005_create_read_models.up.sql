-- Read models: one row per aggregate, written only by their projector (projections crate) in
-- the same transaction as its checkpoint. Every table can be rebuilt from the events; a
-- rebuild fills a shadow copy (CREATE TABLE … LIKE … INCLUDING ALL) and renames it in place,
-- so columns added here must keep that in mind. `position` is the global position of the last
-- event folded into the row.

CREATE TABLE rm_stock_items (
    id                  text        PRIMARY KEY, -- the SKU
    name                text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('product', 'time_slot')),
    starts_at           timestamptz,
    on_hand             bigint      NOT NULL,
    reserved            bigint      NOT NULL,
    available           bigint      NOT NULL,
    low_stock_threshold bigint      NOT NULL,
    low_stock           boolean     NOT NULL,
    unit_price          jsonb       NOT NULL,
    position            bigint      NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX rm_stock_items_kind ON rm_stock_items (kind, id);
CREATE INDEX rm_stock_items_low_stock ON rm_stock_items (id) WHERE low_stock;
CREATE INDEX rm_stock_items_slots ON rm_stock_items (starts_at, id) WHERE kind = 'time_slot';

CREATE TABLE rm_orders (
    id             uuid        PRIMARY KEY,
    customer_id    uuid        NOT NULL,
    status         text        NOT NULL,
    items          jsonb       NOT NULL,
    total          jsonb       NOT NULL,
    payment_id     uuid,
    failure_reason text,
    placed_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    position       bigint      NOT NULL
);
CREATE INDEX rm_orders_customer ON rm_orders (customer_id, placed_at DESC, id);
CREATE INDEX rm_orders_status ON rm_orders (status, placed_at DESC, id);

CREATE TABLE rm_bookings (
    id             uuid        PRIMARY KEY,
    customer_id    uuid        NOT NULL,
    slot_sku       text        NOT NULL,
    guests         integer     NOT NULL,
    status         text        NOT NULL,
    unit_price     jsonb       NOT NULL,
    total          jsonb       NOT NULL,
    payment_id     uuid,
    failure_reason text,
    placed_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    position       bigint      NOT NULL
);
CREATE INDEX rm_bookings_customer ON rm_bookings (customer_id, placed_at DESC, id);
CREATE INDEX rm_bookings_slot ON rm_bookings (slot_sku, placed_at DESC, id);

CREATE TABLE rm_payments (
    id                 uuid        PRIMARY KEY,
    owner_kind         text        NOT NULL,
    owner_id           uuid        NOT NULL,
    status             text        NOT NULL,
    amount             jsonb       NOT NULL,
    refunded           jsonb,
    provider           text        NOT NULL,
    provider_intent_id text        NOT NULL,
    client_secret      text,
    failure_reason     text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    position           bigint      NOT NULL
);
CREATE INDEX rm_payments_owner ON rm_payments (owner_id);
