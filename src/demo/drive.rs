//! A virtual cashier per lane: scans, enrolls, pays and cancels through `LaneHandle::command`,
//! as a terminal does, and brings the lane back to idle when a checkout goes wrong.

use super::*;

/// Why one checkout did not run to its end.
#[derive(Debug, thiserror::Error)]
pub(super) enum DriveError {
    #[error("lane refused {command}: {error}")]
    Command {
        command: &'static str,
        error: CommandError,
    },
    #[error("no {what} within {}s", .limit.as_secs())]
    Timeout { what: &'static str, limit: Duration },
    #[error("the lane's event stream closed")]
    Closed,
}

impl DriveError {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            DriveError::Command { error, .. } => error.kind(),
            DriveError::Timeout { .. } => "timeout",
            DriveError::Closed => "closed",
        }
    }
}

/// A lane's events since the watch began, read in order.
pub(super) struct LaneWatch {
    lane: LaneHandle,
    rx: broadcast::Receiver<Arc<LaneEvent>>,
}

impl LaneWatch {
    pub(super) fn new(lane: &LaneHandle) -> Self {
        let (_, _, rx) = lane.subscribe();
        LaneWatch {
            lane: lane.clone(),
            rx,
        }
    }

    /// Forgets the events so far: what happens next answers the next command.
    pub(super) fn skip_past(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    pub(super) async fn command(
        &self,
        cmd: LaneCommand,
        command: &'static str,
    ) -> Result<LaneSnapshot, DriveError> {
        self.lane
            .command(cmd)
            .await
            .map_err(|error| DriveError::Command { command, error })
    }

    /// The first snapshot, `first` or a later event's, for which `done` holds.
    pub(super) async fn until(
        &mut self,
        first: Option<LaneSnapshot>,
        what: &'static str,
        limit: Duration,
        done: impl Fn(&LaneSnapshot) -> bool,
    ) -> Result<LaneSnapshot, DriveError> {
        if let Some(s) = first.filter(|s| done(s)) {
            return Ok(s);
        }
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(DriveError::Timeout { what, limit }),
                Ok(Ok(event)) if done(&event.snapshot) => return Ok(event.snapshot.clone()),
                Ok(Ok(_)) => {}
                // Missed events: the lane as it is now tells enough.
                Ok(Err(RecvError::Lagged(_))) => {
                    let now = self.lane.snapshot();
                    if done(&now) {
                        return Ok(now);
                    }
                }
                Ok(Err(RecvError::Closed)) => return Err(DriveError::Closed),
            }
        }
    }
}

pub(super) fn state_is(s: &LaneSnapshot, state: &str) -> bool {
    s.state == state
}

pub(super) fn message_code(s: &LaneSnapshot) -> &str {
    s.message.as_ref().map_or("", |m| m.code.as_str())
}

/// One lane's endless line of customers.
pub(super) async fn drive_lane(demo: Arc<Demo>, lane: LaneHandle, position: u16) {
    let mut rng: StdRng = rand::make_rng();
    let mut cast = Cast::new(position);
    // Lanes start at slightly different times, as cashiers do.
    demo.pause(&mut rng, 0.0..0.5, 1.0).await;
    for n in 1u64.. {
        // The first checkout is a quick member payment, so a short run shows money coming in.
        let (scenario, pace) = if n == 1 {
            (Scenario::MemberPaid, 0.3)
        } else {
            let roll = rng.random_range(0..Scenario::total_weight());
            (Scenario::pick(roll), 1.0)
        };
        let receipt = format!("demo-{}-{n}", lane.id());
        match checkout(&demo, &lane, &mut cast, &mut rng, scenario, pace, receipt).await {
            Ok(ended) => demo.tally.ended(ended),
            Err(e) => {
                tracing::warn!(lane = %lane.id(), scenario = scenario.label(), kind = e.kind(), error = %e, "demo: checkout did not finish as planned");
                settle(&lane).await;
            }
        }
        // The next customer steps up.
        demo.pause(&mut rng, 1.0..4.0, 1.0).await;
    }
}

/// Brings a lane back to idle after a checkout went wrong: cancel, close, wait.
pub(super) async fn settle(lane: &LaneHandle) {
    let mut watch = LaneWatch::new(lane);
    let mut now = lane.snapshot();
    if now.up && !state_is(&now, "idle") {
        for cmd in [LaneCommand::Cancel, LaneCommand::Reset] {
            if let Ok(s) = lane.command(cmd).await {
                now = s;
            }
        }
    }
    let result = watch
        .until(Some(now), "idle lane", SETTLE_LIMIT, |s| {
            s.up && state_is(s, "idle")
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(lane = %lane.id(), error = %e, "demo: lane did not settle");
    }
}

/// One customer at the till, start to end.
#[allow(clippy::too_many_arguments)]
pub(super) async fn checkout(
    demo: &Demo,
    lane: &LaneHandle,
    cast: &mut Cast,
    rng: &mut StdRng,
    scenario: Scenario,
    pace: f64,
    receipt: String,
) -> Result<Ended, DriveError> {
    let mut watch = LaneWatch::new(lane);
    watch
        .until(Some(lane.snapshot()), "idle lane", SETTLE_LIMIT, |s| {
            s.up && state_is(s, "idle")
        })
        .await?;
    // Who is at the till, and what they will do.
    let phone = if scenario.newcomer() {
        demo.newcomer(cast).await
    } else {
        cast.next_member()
    };
    let behaviour = Behaviour {
        payment: scenario.payment(),
        payment_delay: Duration::from_millis(rng.random_range(PAY_DELAY_MS)),
        login: scenario.login(),
        login_delay: Duration::from_millis(rng.random_range(LOGIN_DELAY_MS)),
    };
    demo.put_customer(&phone, !scenario.newcomer(), behaviour);
    let tokenised = rng.random_bool(0.5);
    let Some(qr) = demo.qr(&phone, tokenised).or_else(|| demo.qr(&phone, true)) else {
        return Ok(Ended::Other);
    };

    // The basket; products are scanned before the QR or after it.
    let items = rng.random_range(1..=4usize);
    let basket: Vec<(usize, u32)> = (0..items)
        .map(|_| {
            (
                rng.random_range(0..PRODUCTS.len()),
                rng.random_range(1..=3u32),
            )
        })
        .collect();
    let scan_first = rng.random_bool(0.5);
    if scan_first {
        scan_products(demo, &watch, rng, &basket, pace).await?;
    }

    demo.pause(rng, 0.5..1.5, pace).await;
    watch.skip_past();
    let scanned = watch
        .command(LaneCommand::Scan { text: qr }, "the customer's QR")
        .await?;
    let ready = watch
        .until(Some(scanned), "identified customer", IDENTIFY_LIMIT, |s| {
            state_is(s, "ready_for_payment") || state_is(s, "idle")
        })
        .await?;
    if state_is(&ready, "idle") {
        return Ok(Ended::from_message(message_code(&ready)));
    }
    let member = ready
        .session
        .as_ref()
        .and_then(|s| s.customer.as_ref())
        .and_then(|c| c.member);

    if !scan_first {
        scan_products(demo, &watch, rng, &basket, pace).await?;
    }

    if scenario.enrolls() && member == Some(false) {
        demo.pause(rng, 0.5..1.5, pace).await;
        let asked = watch.command(LaneCommand::Enroll, "enroll").await?;
        if scenario == Scenario::EnrollmentAbandoned {
            // The cashier does not wait for the customer's answer.
            watch
                .until(Some(asked), "consent request", ENROLL_LIMIT, |s| {
                    state_is(s, "awaiting_consent") || state_is(s, "ready_for_payment")
                })
                .await?;
            demo.pause(rng, 1.0..2.0, pace).await;
        } else {
            let done = watch
                .until(Some(asked), "enrollment outcome", ENROLL_LIMIT, |s| {
                    state_is(s, "ready_for_payment") && ENROLLMENT_ENDS.contains(&message_code(s))
                })
                .await?;
            if message_code(&done) == "enrollment_completed" {
                demo.tally.enrolled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    demo.pause(rng, 0.5..2.0, pace).await;
    if scenario == Scenario::PaidByCard {
        let closed = watch.command(LaneCommand::Reset, "close").await?;
        let ended = watch
            .until(Some(closed), "closed session", IDENTIFY_LIMIT, |s| {
                state_is(s, "idle")
            })
            .await?;
        return Ok(Ended::from_message(message_code(&ended)));
    }

    let request = pay_request(&basket, receipt);
    let mut now = watch.command(LaneCommand::Pay(request), "pay").await?;
    if scenario == Scenario::CashierCancel {
        now = watch
            .until(Some(now), "payment request", demo.follow_limit, |s| {
                state_is(s, "awaiting_payment") || state_is(s, "idle")
            })
            .await?;
        if !state_is(&now, "idle") {
            demo.pause(rng, 1.5..4.0, pace).await;
            match watch.command(LaneCommand::Cancel, "cancel").await {
                Ok(s) => now = s,
                // The payment moved on meanwhile (e.g. a capture in flight): follow it.
                Err(DriveError::Command {
                    error: CommandError::NotAllowed(_),
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let ended = watch
        .until(Some(now), "payment outcome", demo.follow_limit, |s| {
            state_is(s, "idle")
        })
        .await?;
    Ok(Ended::from_message(message_code(&ended)))
}

/// The cashier scans the basket's products, with a misread now and then.
pub(super) async fn scan_products(
    demo: &Demo,
    watch: &LaneWatch,
    rng: &mut StdRng,
    basket: &[(usize, u32)],
    pace: f64,
) -> Result<(), DriveError> {
    for &(i, quantity) in basket {
        let product = &PRODUCTS[i % PRODUCTS.len()];
        let Some(ean) = ean13(product.ean_body) else {
            continue;
        };
        for _ in 0..quantity {
            demo.pause(rng, 0.2..0.8, pace).await;
            if rng.random_bool(MISREAD_SHARE) {
                // A damaged label: the last digit is read wrong and the lane refuses the scan.
                let misread = format!("{}{}", &ean[..12], (ean.as_bytes()[12] - b'0' + 1) % 10);
                match watch
                    .command(LaneCommand::Scan { text: misread }, "a misread barcode")
                    .await
                {
                    Ok(_)
                    | Err(DriveError::Command {
                        error: CommandError::Invalid(_),
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
                demo.pause(rng, 0.3..0.8, pace).await;
            }
            watch
                .command(LaneCommand::Scan { text: ean.clone() }, "a product scan")
                .await?;
        }
    }
    Ok(())
}
