//! The PaymentIntent and refund endpoints: create, list, read, cancel, refund.

use super::events::{charge_id, intent_json, now};
use super::server::{error, missing, unexpected_state};
use super::{Answer, FakeIntent, State};
use serde_json::{Value, json};
use std::collections::HashMap;

pub(super) fn create_intent(state: &mut State, form: &HashMap<String, String>) -> Answer {
    let (Some(amount), Some(currency)) = (
        form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        form.get("currency"),
    ) else {
        let message = "amount and currency are required";
        return (
            400,
            error("invalid_request_error", Some("parameter_missing"), message),
        );
    };
    let metadata = form
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_owned(), v.clone()))
        })
        .collect();
    let intent = FakeIntent {
        id: format!("pi_fake_{}", state.intents.len() + 1),
        amount,
        currency: currency.to_ascii_lowercase(),
        metadata,
        status: "requires_payment_method".to_owned(),
        amount_refunded: 0,
        refunds: Vec::new(),
        cancellation_reason: None,
        last_payment_error: None,
    };
    let body = intent_json(&intent, false);
    state.intents.push(intent);
    (200, body)
}

pub(super) fn with_intent(
    state: &mut State,
    id: &str,
    then: impl FnOnce(&mut FakeIntent) -> Answer,
) -> Answer {
    match state.intents.iter_mut().find(|i| i.id == id) {
        Some(intent) => then(intent),
        None => missing("payment_intent", id),
    }
}

pub(super) fn cancel(intent: &mut FakeIntent, reason: Option<String>) -> Answer {
    match intent.status.as_str() {
        "succeeded" => {
            let message = format!(
                "You cannot cancel this PaymentIntent because it has a status of {}.",
                intent.status
            );
            (400, unexpected_state(&message))
        }
        "canceled" => (200, intent_json(intent, false)),
        _ => {
            intent.status = "canceled".to_owned();
            intent.cancellation_reason = reason;
            (200, intent_json(intent, false))
        }
    }
}

pub(super) fn refund(state: &mut State, form: &HashMap<String, String>) -> Answer {
    let Some(intent_id) = form.get("payment_intent") else {
        let message = "a payment_intent is required";
        return (
            400,
            error("invalid_request_error", Some("parameter_missing"), message),
        );
    };
    let number = state.refunds + 1;
    let Some(intent) = state.intents.iter_mut().find(|i| &i.id == intent_id) else {
        return missing("payment_intent", intent_id);
    };
    if intent.status != "succeeded" {
        let message = format!(
            "This PaymentIntent ({intent_id}) does not have a successful charge to refund."
        );
        return (400, unexpected_state(&message));
    }
    let left = intent.amount - intent.amount_refunded;
    let amount = match form.get("amount").map(|a| a.parse::<i64>()) {
        None => left,
        Some(Ok(amount)) if amount > 0 => amount,
        Some(_) => {
            let message = "amount must be a positive integer";
            return (
                400,
                error(
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    message,
                ),
            );
        }
    };
    if amount > left {
        let message = format!(
            "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
        );
        return (
            400,
            error("invalid_request_error", Some("amount_too_large"), &message),
        );
    }
    let id = format!("re_fake_{number}");
    intent.amount_refunded += amount;
    intent.refunds.push(id.clone());
    let body = json!({
        "id": id, "object": "refund", "amount": amount, "created": now(),
        "currency": intent.currency, "payment_intent": intent.id,
        "charge": charge_id(intent), "metadata": {}, "status": "succeeded"
    });
    state.refunds = number;
    (200, body)
}

pub(super) fn list_intents(state: &State, query: &HashMap<String, String>) -> Answer {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let newest_first: Vec<&FakeIntent> = state.intents.iter().rev().collect();
    let start = match query.get("starting_after") {
        None => 0,
        Some(after) => match newest_first.iter().position(|i| &i.id == after) {
            Some(index) => index + 1,
            None => return missing("payment_intent", after),
        },
    };
    let expand = expands(query, "data.latest_charge");
    let page: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(limit)
        .map(|intent| intent_json(intent, expand))
        .collect();
    let has_more = start + page.len() < newest_first.len();
    let body = json!({"object": "list", "url": "/v1/payment_intents", "has_more": has_more,
        "data": page});
    (200, body)
}

/// Whether `expand[…]` asks for `field`.
pub(super) fn expands(query: &HashMap<String, String>, field: &str) -> bool {
    query
        .iter()
        .any(|(k, v)| k.starts_with("expand[") && v == field)
}
