//! A webhook receiver on a free loopback port, for the product's real outbound client.
//!
//! It records every request as it arrives (headers that matter, raw body, and the answer once
//! given), and answers as scripted: [`FakeReceiver::then_answer`] queues answers for the next
//! requests, [`FakeReceiver::always`] sets the answer after them (`200` unless told). A
//! [`Answer::Hang`] never answers: the request stays open until the client gives up. An
//! [`Answer::Held`] answers its status once the test calls [`FakeReceiver::release`], so a
//! test can have more work queued behind a request before it fails.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Answers with this status.
    Status(u16),
    /// Never answers.
    Hang,
    /// Answers with this status once [`FakeReceiver::release`] was called.
    Held(u16),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Arrival order, from 0.
    pub index: usize,
    /// `Reserva-Event-Id`.
    pub event_id: String,
    /// `Reserva-Event-Type`.
    pub event_type: String,
    /// `Reserva-Delivery-Attempt`.
    pub attempt: String,
    /// `Reserva-Signature`.
    pub signature: String,
    /// `Content-Type`.
    pub content_type: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The status answered; `None` while hanging.
    pub answered: Option<u16>,
}

impl Received {
    /// Whether the receiver accepted it (answered 2xx).
    pub fn accepted(&self) -> bool {
        self.answered
            .is_some_and(|status| (200..300).contains(&status))
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    otherwise: Option<Answer>,
}

struct Shared {
    state: Mutex<State>,
    released: tokio::sync::watch::Sender<bool>,
}

/// The receiver. Dropping it stops the server.
pub struct FakeReceiver {
    /// `http://127.0.0.1:<port>/hooks`.
    pub url: String,
    shared: Arc<Shared>,
    server: ServerHandle,
}

impl FakeReceiver {
    /// Starts a receiver that answers `200` to everything until scripted otherwise.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            released: tokio::sync::watch::Sender::new(false),
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind the fake receiver");
        let url = format!("http://{}/hooks", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url,
            shared,
            server: handle,
        }
    }

    /// Answers the next requests with `answers`, in order.
    pub fn then_answer(&self, answers: impl IntoIterator<Item = Answer>) {
        lock(&self.shared.state).script.extend(answers);
    }

    /// Answers every request after the scripted ones with `answer`.
    pub fn always(&self, answer: Answer) {
        lock(&self.shared.state).otherwise = Some(answer);
    }

    /// Lets every [`Answer::Held`] request (now or later) answer.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.state).received.clone()
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (index, answer) = {
        let mut state = lock(&shared.state);
        let index = state.received.len();
        state.received.push(Received {
            index,
            event_id: header("reserva-event-id"),
            event_type: header("reserva-event-type"),
            attempt: header("reserva-delivery-attempt"),
            signature: header("reserva-signature"),
            content_type: header("content-type"),
            body: body.to_vec(),
            answered: None,
        });
        let answer = state
            .script
            .pop_front()
            .or(state.otherwise)
            .unwrap_or(Answer::Status(200));
        if let Answer::Status(status) = answer {
            state.received[index].answered = Some(status);
        }
        (index, answer)
    };
    let answer = match answer {
        Answer::Held(status) => {
            let mut released = shared.released.subscribe();
            let _ = released.wait_for(|released| *released).await;
            lock(&shared.state).received[index].answered = Some(status);
            Answer::Status(status)
        }
        other => other,
    };
    match answer {
        Answer::Status(status) | Answer::Held(status) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
                .body(format!("request {index}"))
        }
        Answer::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            HttpResponse::GatewayTimeout().finish()
        }
    }
}
