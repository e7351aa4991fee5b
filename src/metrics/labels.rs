//! The closed lists of label values: an enum per label, and the lists owned by other modules.

/// Declares a closed set of label values: an enum, `ALL`, `LABELS` (the same, as text) and
/// `as_str()`.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every value's label, in the order of `ALL`.
            pub const LABELS: &'static [&'static str] = &[$($label),+];

            /// The metric label.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }
    };
}

label_enum! {
    /// Why the supervisor restarted a lane (`lanehub_lane_restarts_total{reason}`).
    RestartReason {
        /// The lane actor panicked.
        Panic => "panic",
        /// The lane actor stopped without being told to.
        Stopped => "stopped",
    }
}

label_enum! {
    /// The result of one Vipps call (`lanehub_vipps_requests_total{outcome}`). Counted once per
    /// HTTP attempt, and once for a call lanehub refused before the wire (circuit open,
    /// overloaded). The error ratio counts everything except `ok` and `client_error`.
    RequestOutcome {
        /// A 2xx answer.
        Ok => "ok",
        /// Another 4xx (expected business answers: pending login, 404, 409, 422, 423).
        ClientError => "client_error",
        /// 401 or 403: credentials or subscription wrong.
        Unauthorized => "unauthorized",
        /// 429.
        RateLimited => "rate_limited",
        /// 5xx.
        ServerError => "server_error",
        /// No answer within the timeout.
        Timeout => "timeout",
        /// The connection failed or broke.
        Connection => "connection",
        /// A 2xx answer whose body lanehub could not read.
        Decode => "decode",
        /// Refused by lanehub: the circuit breaker is open.
        CircuitOpen => "circuit_open",
        /// Refused by lanehub: too many requests waiting in its rate limiter.
        Overloaded => "overloaded",
    }
}

impl RequestOutcome {
    /// The outcome of an HTTP answer with this status.
    pub fn from_status(status: u16) -> RequestOutcome {
        match status {
            200..=299 => RequestOutcome::Ok,
            401 | 403 => RequestOutcome::Unauthorized,
            429 => RequestOutcome::RateLimited,
            500..=599 => RequestOutcome::ServerError,
            _ => RequestOutcome::ClientError,
        }
    }
}

label_enum! {
    /// Why a Vipps call was sent again (`lanehub_vipps_retries_total{reason}`).
    RetryReason {
        Timeout => "timeout",
        Connection => "connection",
        ServerError => "server_error",
        /// 429, after waiting for `Retry-After`.
        RateLimited => "rate_limited",
        /// 423 Locked.
        Locked => "locked",
        /// 401 on a cached access token: fetched a new one and tried again.
        TokenExpired => "token_expired",
    }
}

label_enum! {
    /// Which webhook arrived (`lanehub_webhooks_received_total{event}`); `unknown` when the
    /// name is not one lanehub knows or the body could not be trusted (bad signature).
    WebhookEvent {
        Created => "created",
        Authorized => "authorized",
        Aborted => "aborted",
        Expired => "expired",
        Cancelled => "cancelled",
        Captured => "captured",
        Refunded => "refunded",
        Terminated => "terminated",
        /// `login.merchant-initiated.ping.v1`.
        LoginPing => "login_ping",
        Unknown => "unknown",
    }
}

impl WebhookEvent {
    /// The label for a Vipps event name such as `epayments.payment.captured.v1`.
    /// `ALL` lists the known events in the order of `crate::vipps::WEBHOOK_EVENTS`, `Unknown`
    /// last.
    pub fn from_vipps_name(name: &str) -> WebhookEvent {
        crate::vipps::WEBHOOK_EVENTS
            .iter()
            .position(|known| *known == name)
            .map_or(WebhookEvent::Unknown, |i| WebhookEvent::ALL[i])
    }
}

label_enum! {
    /// What lanehub did with a webhook (`lanehub_webhooks_received_total{verdict}`).
    WebhookVerdict {
        /// Verified and handed to the lane.
        Accepted => "accepted",
        /// Verified, but already seen.
        Duplicate => "duplicate",
        /// Missing or wrong signature, or body hash mismatch.
        BadSignature => "bad_signature",
        /// Signed, but not a body lanehub can read.
        Malformed => "malformed",
        /// About a payment or login lanehub does not know.
        UnknownReference => "unknown_reference",
    }
}

label_enum! {
    /// How the enrollment follower finished an enrollment a session had given up on
    /// (`lanehub_late_enrollments_total{outcome}`); also the store's `late_enrollments.outcome`.
    LateEnrollmentOutcome {
        /// The customer consented after all: the member was stored.
        Enrolled => "enrolled",
        /// The customer declined in the Vipps app.
        Denied => "denied",
        /// The customer did not answer before the Login (or the follower's window) expired.
        Expired => "expired",
        /// Consented, but userinfo or the member store kept failing until the window passed.
        Failed => "failed",
    }
}

label_enum! {
    /// One attempt to deliver an enrollment to the merchant's CRM
    /// (`lanehub_members_outbox_deliveries_total{outcome}`).
    OutboxDelivery {
        /// The CRM accepted it (200, 201 or 204); it left the outbox.
        Delivered => "delivered",
        /// No answer, a timeout, 408, 429 or 5xx: it is tried again after a backoff.
        Failed => "failed",
        /// Another 4xx: the CRM refused it for good; kept as refused until retried.
        Refused => "refused",
    }
}

label_enum! {
    /// A bounded queue whose depth and drops are exported (`lanehub_queue_depth{queue}`).
    Queue {
        /// Lane actors' mailboxes, summed over lanes.
        LaneMailbox => "lane_mailbox",
        /// Lanes' journal-and-call pipelines, summed over lanes.
        LanePipeline => "lane_pipeline",
        /// The Vipps client actor's mailbox.
        VippsMailbox => "vipps_mailbox",
        /// Scanner threads to their lane.
        ScannerEvents => "scanner_events",
        /// Updates waiting to be sent to lane terminals, summed over terminals.
        TerminalUpdates => "terminal_updates",
        /// Journal writes a lane keeps to write again once the store takes writes.
        JournalBacklog => "journal_backlog",
    }
}

label_enum! {
    /// What went wrong with a store request (`lanehub_store_errors_total{kind}`).
    StoreFault {
        /// The disk (or the database's size limit) is full.
        DiskFull => "disk_full",
        /// The operating system reported an I/O error.
        Io => "io",
        /// The file or its directory cannot be written (permissions, a read-only mount).
        ReadOnly => "read_only",
        /// Another process held the database lock too long.
        Busy => "busy",
        /// The database file is damaged.
        Corrupt => "corrupt",
        /// SQLite rolled back or did not commit the transaction.
        NotCommitted => "not_committed",
        /// The data broke a rule of the schema (a bug, or a hand-edited database).
        Constraint => "constraint",
        /// The store thread has stopped.
        Closed => "closed",
        /// Anything else.
        Other => "other",
    }
}

// Labels owned by other modules: taken from the types they label, so they cannot drift.

/// `state` of `lanehub_lane_session_state`.
pub const SESSION_STATES: &[&str] = &crate::session::STATE_LABELS;

/// `outcome` of `lanehub_sessions_total`, `lanehub_session_duration_seconds` and
/// `lanehub_payments_total` (a payment ends with its session's outcome).
pub const SESSION_OUTCOMES: &[&str] = &crate::session::Outcome::LABELS;

/// `outcome` of `lanehub_enrollments_total`.
pub const ENROLLMENT_OUTCOMES: &[&str] = &crate::session::EnrollmentOutcome::LABELS;

/// `result` of `lanehub_membership_checks_total`.
pub const MEMBERSHIP_RESULTS: &[&str] = &crate::session::Membership::LABELS;

/// `kind` of `lanehub_scans_total`.
pub const SCAN_KINDS: &[&str] = &crate::scanner::ScanKind::LABELS;
