//! Short bursts of Vipps faults injected through the simulator's fault controls.

use super::*;

/// A short fault on one Vipps operation.
#[derive(Debug, Clone)]
pub struct FaultBurst {
    pub operation: Operation,
    pub config: FaultConfig,
    pub label: &'static str,
}

impl FaultBurst {
    /// Operations a fault may hit: those a checkout calls often. Bursts stay short (at most two
    /// errors) so retries succeed and the circuit breaker stays closed.
    pub(super) const OPERATIONS: [Operation; 5] = [
        Operation::PaymentGet,
        Operation::PaymentCreate,
        Operation::PaymentCapture,
        Operation::QrExchange,
        Operation::CheckIn,
    ];

    /// The burst for two rolls: which operation, and which kind of fault.
    pub fn pick(operation_roll: usize, kind_roll: u32) -> FaultBurst {
        let operation = Self::OPERATIONS[operation_roll % Self::OPERATIONS.len()];
        let (label, config) = match kind_roll % 3 {
            0 => (
                "server_errors",
                FaultConfig {
                    server_error_next: 2,
                    ..FaultConfig::default()
                },
            ),
            1 => (
                "too_many_requests",
                FaultConfig {
                    too_many_requests_next: 2,
                    retry_after_secs: Some(1),
                    ..FaultConfig::default()
                },
            ),
            _ => (
                "slow_answers",
                FaultConfig {
                    latency_ms: 400,
                    jitter_ms: 1_200,
                    ..FaultConfig::default()
                },
            ),
        };
        FaultBurst {
            operation,
            config,
            label,
        }
    }
}

/// Now and then a short burst of Vipps errors or slow answers on one operation.
pub(super) async fn inject_faults(demo: Arc<Demo>) {
    let mut rng: StdRng = rand::make_rng();
    let mut wait = FIRST_FAULT_SECS;
    let mut first = true;
    loop {
        tokio::time::sleep(Duration::from_secs_f64(rng.random_range(wait.clone()))).await;
        wait = FAULT_EVERY_SECS;
        // The first burst hits payment reads, which every checkout makes, so even a short run
        // shows errors and retries.
        let burst = if std::mem::take(&mut first) {
            FaultBurst::pick(0, 0)
        } else {
            FaultBurst::pick(rng.random_range(0..usize::MAX), rng.random_range(0..3))
        };
        let faults = &demo.sim.faults;
        if let Err(e) = faults.set_operation(burst.operation, burst.config.clone()) {
            tracing::warn!(error = %e, "demo: fault burst refused");
            continue;
        }
        tracing::info!(
            operation = burst.operation.as_str(),
            fault = burst.label,
            "demo: Vipps fault burst"
        );
        // Counted faults (the next N answers fail) stay until calls spent them, within a limit;
        // slow answers stay for a fixed while.
        let counted = burst.config.server_error_next + burst.config.too_many_requests_next > 0;
        let limit = if counted {
            FAULT_BURST_LIMIT
        } else {
            FAULT_BURST
        };
        let started = Instant::now();
        let mut check = tokio::time::interval(FAULT_CHECK);
        loop {
            check.tick().await;
            let spent = || {
                faults
                    .view()
                    .operations
                    .get(burst.operation.as_str())
                    .is_none_or(|c| c.server_error_next + c.too_many_requests_next == 0)
            };
            if started.elapsed() >= limit || (counted && spent()) {
                break;
            }
        }
        faults.clear_operation(burst.operation);
    }
}
