//! Injected provider faults, so the resilience layer and the sagas can be exercised on demand.
//!
//! A real provider fails in three ways a client can tell apart: it answers an error (a 5xx),
//! it does not answer at all, or it answers something that cannot be decoded. [`Chaos`] picks
//! one of those for a configured share of calls; the simulated gateway (and the fake Stripe of
//! the tests) then fail the call that way *before* it has any effect, so a retry with the same
//! idempotency key meets a provider that never saw the first attempt. Each failure takes the
//! path a real one would: an error answer and an undecodable body become
//! [`super::PaymentGatewayError::Unavailable`] exactly as the Stripe client maps them, and a
//! hang is cut off by [`super::Resilient`]'s attempt timeout. All three count against the
//! circuit breaker.

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The provider answers an error (Stripe's 503 `api_error`).
    Refuse,
    /// The provider never answers; only the caller's timeout ends the call.
    Hang,
    /// The provider answers 200 with a body that is not the expected JSON.
    Malformed,
}

/// Shares of calls (each `0..=1`, summing to at most 1) that fail in each way.
///
/// `RESERVA_GATEWAY__CHAOS_REFUSE`, `…_HANG` and `…_MALFORMED`; all zero (the default) turns
/// chaos off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Chaos {
    refuse: f64,
    hang: f64,
    malformed: f64,
}

/// Why a chaos setting was refused at start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChaosError {
    /// A share is negative, above 1, or not a number.
    #[error("the {mode} share must be between 0 and 1, got {share}")]
    ShareOutOfRange {
        /// `refuse`, `hang` or `malformed`.
        mode: &'static str,
        /// The share given.
        share: f64,
    },
    /// The shares add up to more than every call.
    #[error("the chaos shares add up to {total}, more than 1")]
    SumAboveOne {
        /// refuse + hang + malformed.
        total: f64,
    },
}

impl Chaos {
    /// Chaos off: no call fails on purpose.
    pub const OFF: Self = Self {
        refuse: 0.0,
        hang: 0.0,
        malformed: 0.0,
    };

    /// Validated shares.
    ///
    /// # Errors
    /// [`ChaosError::ShareOutOfRange`] for a share outside `0..=1` (or NaN), and
    /// [`ChaosError::SumAboveOne`] when the shares cover more than every call.
    pub fn new(refuse: f64, hang: f64, malformed: f64) -> Result<Self, ChaosError> {
        for (mode, share) in [("refuse", refuse), ("hang", hang), ("malformed", malformed)] {
            if !(0.0..=1.0).contains(&share) {
                return Err(ChaosError::ShareOutOfRange { mode, share });
            }
        }
        let total = refuse + hang + malformed;
        // A little slack so that three thirds written as 0.33… still validate.
        if total > 1.0 + 1e-9 {
            return Err(ChaosError::SumAboveOne { total });
        }
        Ok(Self {
            refuse,
            hang,
            malformed,
        })
    }

    /// Every call fails with `fault`.
    pub fn always(fault: Fault) -> Self {
        let mut chaos = Self::OFF;
        match fault {
            Fault::Refuse => chaos.refuse = 1.0,
            Fault::Hang => chaos.hang = 1.0,
            Fault::Malformed => chaos.malformed = 1.0,
        }
        chaos
    }

    /// Whether any call can fail on purpose.
    pub fn is_on(&self) -> bool {
        self.refuse + self.hang + self.malformed > 0.0
    }

    /// The fault for the next call, if it gets one.
    pub fn draw(&self) -> Option<Fault> {
        if !self.is_on() {
            return None;
        }
        self.pick(rand::random::<f64>())
    }

    /// The fault a uniform draw `roll` in `0..1` falls on: refuse, then hang, then malformed.
    fn pick(&self, roll: f64) -> Option<Fault> {
        if roll < self.refuse {
            Some(Fault::Refuse)
        } else if roll < self.refuse + self.hang {
            Some(Fault::Hang)
        } else if roll < self.refuse + self.hang + self.malformed {
            Some(Fault::Malformed)
        } else {
            None
        }
    }
}

/// What a malformed answer carries: a proxy's error page where JSON was expected.
const MALFORMED_BODY: &str = "<html><body>502 Bad Gateway</body></html>";

/// Fails a call of `operation` as `fault` says, counting it in
/// `reserva_gateway_chaos_total{operation,fault}`. A hang never returns: the caller's timeout
/// ([`super::Resilient`]) ends it, as with a provider that stopped answering.
///
/// # Errors
/// Always, except that a hang never completes: [`super::PaymentGatewayError::Unavailable`] as
/// the Stripe client reports a 503 or an undecodable body.
pub(super) async fn fail(
    fault: Fault,
    operation: &'static str,
) -> Result<(), super::PaymentGatewayError> {
    let label = match fault {
        Fault::Refuse => "refuse",
        Fault::Hang => "hang",
        Fault::Malformed => "malformed",
    };
    metrics::counter!("reserva_gateway_chaos_total", "operation" => operation, "fault" => label)
        .increment(1);
    match fault {
        Fault::Refuse => Err(super::PaymentGatewayError::Unavailable(
            "the provider answered 503: simulated refusal (chaos)".to_owned(),
        )),
        Fault::Hang => std::future::pending().await,
        Fault::Malformed => Err(super::stripe::undecodable_body(MALFORMED_BODY)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_outside_zero_to_one_are_refused() {
        for (refuse, hang, malformed, mode) in [
            (-0.1, 0.0, 0.0, "refuse"),
            (0.0, 1.5, 0.0, "hang"),
            (0.0, 0.0, f64::NAN, "malformed"),
        ] {
            let error = Chaos::new(refuse, hang, malformed).unwrap_err();
            assert!(
                matches!(error, ChaosError::ShareOutOfRange { mode: m, .. } if m == mode),
                "{error}"
            );
        }
    }

    #[test]
    fn shares_summing_over_one_are_refused() {
        let error = Chaos::new(0.5, 0.4, 0.2).unwrap_err();
        assert!(matches!(error, ChaosError::SumAboveOne { .. }), "{error}");
    }

    #[test]
    fn thirds_and_zero_and_one_are_accepted() {
        assert!(Chaos::new(0.11, 0.11, 0.11).is_ok());
        assert!(Chaos::new(1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0).is_ok());
        assert!(!Chaos::new(0.0, 0.0, 0.0).unwrap().is_on());
        assert_eq!(Chaos::always(Fault::Hang).draw(), Some(Fault::Hang));
    }

    #[test]
    fn a_roll_falls_on_the_modes_in_order() {
        let chaos = Chaos::new(0.1, 0.2, 0.3).unwrap();
        assert_eq!(chaos.pick(0.05), Some(Fault::Refuse));
        assert_eq!(chaos.pick(0.25), Some(Fault::Hang));
        assert_eq!(chaos.pick(0.55), Some(Fault::Malformed));
        assert_eq!(chaos.pick(0.65), None);
        assert_eq!(Chaos::OFF.draw(), None);
    }
}
