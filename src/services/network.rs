//! Who is on the other end of a connection, and how much they may ask: the client address
//! (`X-Forwarded-For` trusted only from configured proxies), per-listener allow and deny lists,
//! and rate limits per client address and route class, plus per identifier for the lookups
//! that answer "does this email exist".
//!
//! Limits are counted on the cache engine's rate counter: in process (governor's keyed GCRA
//! limiters) with the embedded cache, on Redis, shared by every instance, with the Redis one.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::Clock;
use ipnet::IpNet;

use crate::cache::rate::{Admission, LocalRateCounter, RateCounter};
use sha2::{Digest, Sha256};

/// Which listener a request came in on (the lists differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Public,
    Internal,
}

/// Addresses allowed and refused on one listener.
#[derive(Debug, Clone, Default)]
pub struct AddressRules {
    /// When non-empty, only these may connect.
    pub allow: Vec<IpNet>,
    /// Never these.
    pub deny: Vec<IpNet>,
}

impl AddressRules {
    pub fn admits(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        if self.deny.iter().any(|net| net.contains(&address)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&address))
    }
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

/// How client addresses are found and checked.
#[derive(Debug, Clone, Default)]
pub struct Addressing {
    /// Proxies whose `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: Vec<IpNet>,
    pub public: AddressRules,
    pub internal: AddressRules,
}

impl Addressing {
    /// The client's address: the peer, unless the peer is a trusted proxy, in which case the
    /// nearest address of `X-Forwarded-For` that is not itself a trusted proxy (walking from the
    /// right, the part the trusted proxies appended).
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let hops: Vec<IpAddr> = header
            .split(',')
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .collect();
        hops.iter()
            .rev()
            .find(|hop| !self.trusted(**hop))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }

    fn trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address))
    }

    pub fn admits(&self, side: Side, client: IpAddr) -> bool {
        match side {
            Side::Public => self.public.admits(client),
            Side::Internal => self.internal.admits(client),
        }
    }
}

/// The classes of public routes with their own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Existence checks and lookups by email, phone or login id (an enumeration oracle).
    Lookup,
    /// User creation and sign-up (each may hash a password).
    Signup,
    /// Everything else.
    Default,
}

impl RouteClass {
    /// The class of a route template.
    pub fn of(template: &str) -> RouteClass {
        match template {
            "/v1/user/exists/{key}/{value}"
            | "/v2/user/exists/{key}/{value}"
            | "/v1/user/get/{key}/{value}"
            | "/v2/user/get/{key}/{value}"
            | "/v1/user/getuser" => RouteClass::Lookup,
            "/v1/user/create" | "/v2/user/create" | "/v3/user/create" | "/v1/ssouser/create"
            | "/v1/user/signup" | "/v2/user/signup" => RouteClass::Signup,
            _ => RouteClass::Default,
        }
    }
}

/// Requests per minute; 0 switches a limit off.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitSettings {
    pub per_client: u32,
    pub lookup_per_client: u32,
    pub signup_per_client: u32,
    pub per_identifier: u32,
}

/// A refused request: when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after_seconds: u64,
}

/// The rate limits of the public listener, counted on a [`RateCounter`] (in process, or on
/// Redis shared by every instance).
pub struct RateLimits {
    settings: RateLimitSettings,
    counter: Arc<dyn RateCounter>,
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings, counter: Arc<dyn RateCounter>) -> Self {
        RateLimits { settings, counter }
    }

    /// Limits counted in process on `clock` (tests move a fake one).
    pub fn with_clock<C>(settings: RateLimitSettings, clock: C) -> Self
    where
        C: Clock + Clone + Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        RateLimits::new(settings, Arc::new(LocalRateCounter::with_clock(clock)))
    }

    /// Spends one request of `key` from the budget `bucket` of `per_minute` (0: no limit). A
    /// counter that cannot answer admits: the Redis counter is wrapped in an in-process
    /// fallback, so this is only the last resort.
    async fn spend(&self, bucket: &'static str, per_minute: u32, key: &str) -> Result<(), Refusal> {
        let Some(rate) = NonZeroU32::new(per_minute) else {
            return Ok(());
        };
        match self.counter.admit(bucket, key, rate).await {
            Ok(Admission::Admitted) => Ok(()),
            Ok(Admission::RetryAfter(wait)) => Err(Refusal {
                retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }),
            Err(error) => {
                tracing::warn!(%error, "rate counter unavailable, request admitted");
                Ok(())
            }
        }
    }

    /// Counts one request of `client` on a route of `class`. The per-class quotas apply to
    /// anonymous callers (a token holder is accountable); the per-identifier one (`identifier`
    /// is the looked-up value of a lookup route, kept only as a digest) to everyone.
    pub async fn check(
        &self,
        class: RouteClass,
        client: IpAddr,
        identifier: Option<&str>,
        anonymous: bool,
    ) -> Result<(), Refusal> {
        let client = canonical(client).to_string();
        self.spend("client", self.settings.per_client, &client)
            .await?;
        match class {
            RouteClass::Lookup if anonymous => {
                self.spend("lookup", self.settings.lookup_per_client, &client)
                    .await?
            }
            RouteClass::Signup if anonymous => {
                self.spend("signup", self.settings.signup_per_client, &client)
                    .await?
            }
            _ => {}
        }
        if class == RouteClass::Lookup
            && let Some(identifier) = identifier
        {
            let digest = Sha256::digest(identifier.trim().to_lowercase().as_bytes());
            self.spend(
                "identifier",
                self.settings.per_identifier,
                &hex::encode(digest),
            )
            .await?;
        }
        Ok(())
    }
}

/// Addresses and limits together, as the HTTP layer applies them.
pub struct NetworkPolicy {
    pub addressing: Addressing,
    pub limits: RateLimits,
}

impl NetworkPolicy {
    /// Counts a request on the public listener (the internal one carries service traffic).
    /// The identifier of a lookup is the last segment of its path (`/v1/user/exists/email/x`).
    pub async fn admit_request(
        &self,
        side: Side,
        template: Option<&str>,
        path: &str,
        client: IpAddr,
        anonymous: bool,
    ) -> Result<(), Refusal> {
        if side == Side::Internal {
            return Ok(());
        }
        let class = template.map(RouteClass::of).unwrap_or(RouteClass::Default);
        let identifier = template
            .filter(|t| t.ends_with("{value}"))
            .and_then(|_| path.rsplit('/').next());
        self.limits
            .check(class, client, identifier, anonymous)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("net")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let addressing = Addressing {
            trusted_proxies: vec![net("10.0.0.0/8")],
            ..Addressing::default()
        };
        // From an untrusted peer the header is a lie the client wrote.
        assert_eq!(
            addressing.client(ip("203.0.113.9"), Some("198.51.100.1")),
            ip("203.0.113.9")
        );
        // From a trusted proxy: the nearest hop that is not one of ours.
        assert_eq!(
            addressing.client(ip("10.0.0.2"), Some("1.2.3.4, 198.51.100.7, 10.0.0.5")),
            ip("198.51.100.7")
        );
        assert_eq!(addressing.client(ip("10.0.0.2"), None), ip("10.0.0.2"));
        assert_eq!(
            addressing.client(ip("::ffff:10.0.0.2"), Some("198.51.100.7")),
            ip("198.51.100.7"),
            "IPv4-mapped peers count as IPv4"
        );
    }

    #[test]
    fn deny_wins_and_a_non_empty_allow_list_admits_only_its_members() {
        let rules = AddressRules {
            allow: vec![net("10.0.0.0/8")],
            deny: vec![net("10.9.0.0/16")],
        };
        assert!(rules.admits(ip("10.1.2.3")));
        assert!(!rules.admits(ip("10.9.2.3")));
        assert!(!rules.admits(ip("192.0.2.1")));
        assert!(AddressRules::default().admits(ip("192.0.2.1")));
    }

    #[tokio::test]
    async fn limits_count_per_client_class_and_identifier_and_refill_with_time() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(
            RateLimitSettings {
                per_client: 600,
                lookup_per_client: 60,
                signup_per_client: 0,
                per_identifier: 5,
            },
            clock.clone(),
        );
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let lookup = |client: IpAddr, identifier: String| {
            let limits = &limits;
            async move {
                limits
                    .check(RouteClass::Lookup, client, Some(&identifier), true)
                    .await
            }
        };
        // Five lookups of one email from different clients, then the identifier is spent.
        for n in 0..5u8 {
            let client = IpAddr::from([198, 51, 100, n]);
            assert!(lookup(client, "x@y.z".into()).await.is_ok());
        }
        let refusal = lookup(b, "X@Y.Z".into())
            .await
            .expect_err("the identifier's quota is spent");
        assert_eq!(
            refusal.retry_after_seconds, 12,
            "one per 12 s at 5 per minute"
        );
        // A client's lookup quota: 60 a minute, whatever the identifiers.
        let mut allowed = 0;
        for n in 0..100 {
            if lookup(a, format!("u{n}@y.z")).await.is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 60);
        // Other routes of the same client still pass (600 a minute).
        assert!(
            limits
                .check(RouteClass::Default, a, None, true)
                .await
                .is_ok()
        );
        // Time refills the quota: a second buys one lookup.
        clock.advance(Duration::from_secs(1));
        assert!(lookup(a, "fresh@y.z".into()).await.is_ok());
        assert!(lookup(a, "fresh2@y.z".into()).await.is_err());
        // Accuracy over ten simulated seconds at 200 requests a second against 600 a minute:
        // the burst of 600 (less what was used above) plus 10 refills a second.
        let client = ip("192.0.2.50");
        let mut allowed = 0;
        for _ in 0..10 {
            for _ in 0..200 {
                if limits
                    .check(RouteClass::Default, client, None, true)
                    .await
                    .is_ok()
                {
                    allowed += 1;
                }
            }
            clock.advance(Duration::from_secs(1));
        }
        let expected = 600 + 9 * 10;
        assert!(
            (allowed as f64 - expected as f64).abs() <= expected as f64 * 0.05,
            "allowed {allowed}, expected {expected} within 5 %"
        );
    }
}
