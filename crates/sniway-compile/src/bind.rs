//! Live status: what the data plane could not bind. Compile predicts `Programmed=True` for
//! every served listener; when binding its (address, port) fails (port in use, permission),
//! [`apply_bind_failures`] corrects the statuses. Pure: the caller binds and passes the errors.

use std::net::SocketAddr;

use crate::compile::Compiled;
use crate::status::Condition;
use crate::status::conditions::{reasons, status, types};

/// For every served listener on a socket that could not be bound: `Accepted=False/
/// PortUnavailable` ("cannot listen on ADDR: ERROR") and `Programmed=False/Pending` ("not
/// listening on ADDR: ERROR; retried on the next reload"). A Gateway with such a listener gets
/// its `Accepted` recomputed (`ListenersNotValid`, True while some listener is still valid),
/// and, when none of its listeners is programmed any more, `Programmed=False/Pending` and no
/// `status.addresses`. Statuses not touched by a failure are left as they are, so no failures
/// leave the output unchanged. The table is not changed: the data plane serves what it bound.
pub fn apply_bind_failures(compiled: &mut Compiled, failures: &[(SocketAddr, String)]) {
    if failures.is_empty() {
        return;
    }
    // ListenerSet listeners: their own conditions only (the set's conditions follow its
    // listeners' validity at compile time).
    for ls in &mut compiled.listener_sets {
        let Some(st) = ls.status.as_mut() else { continue };
        for l in &mut st.listeners {
            mark_failed(l, failures);
        }
    }
    for gw in &mut compiled.gateways {
        let Some(st) = gw.status.as_mut() else { continue };
        let mut touched = false;
        for l in &mut st.listeners {
            touched |= mark_failed(l, failures);
        }
        if !touched {
            continue;
        }
        let programmed =
            |l: &crate::status::ListenerStatus| is_true(&l.conditions, types::PROGRAMMED);
        let invalid: Vec<&str> =
            st.listeners.iter().filter(|l| !programmed(l)).map(|l| l.name.as_str()).collect();
        let total = st.listeners.len();
        let (accepted, msg) = if invalid.len() < total {
            (
                status::TRUE,
                format!(
                    "{} of {total} listeners are not valid: {}",
                    invalid.len(),
                    invalid.join(", ")
                ),
            )
        } else {
            (status::FALSE, format!("no valid listeners: {}", invalid.join(", ")))
        };
        set(&mut st.conditions, types::ACCEPTED, accepted, reasons::LISTENERS_NOT_VALID, msg);
        if invalid.len() == total {
            set(
                &mut st.conditions,
                types::PROGRAMMED,
                status::FALSE,
                reasons::PENDING,
                "no listener is listening (see the listeners' Programmed conditions); retried on \
                 the next reload",
            );
            st.addresses.clear();
        }
    }
}

/// Marks one listener whose sockets failed to bind; returns whether any did.
fn mark_failed(l: &mut crate::status::ListenerStatus, failures: &[(SocketAddr, String)]) -> bool {
    let failed: Vec<&(SocketAddr, String)> =
        failures.iter().filter(|(addr, _)| l.sockets.contains(addr)).collect();
    if failed.is_empty() {
        return false;
    }
    let cannot: Vec<String> =
        failed.iter().map(|(a, e)| format!("cannot listen on {a}: {e}")).collect();
    let not: Vec<String> =
        failed.iter().map(|(a, e)| format!("not listening on {a}: {e}")).collect();
    set(
        &mut l.conditions,
        types::ACCEPTED,
        status::FALSE,
        reasons::PORT_UNAVAILABLE,
        cannot.join("; "),
    );
    set(
        &mut l.conditions,
        types::PROGRAMMED,
        status::FALSE,
        reasons::PENDING,
        format!("{}; retried on the next reload", not.join("; ")),
    );
    true
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == status::TRUE)
}

/// Rewrites the condition of `type_` in place, keeping its generation and time.
fn set(
    conditions: &mut [Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
) {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        c.status = status.into();
        c.reason = reason.into();
        c.message = message.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompileOptions, LoadOptions, Source, compile, load};

    const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: x
  listeners:
  - {name: a, protocol: TLS, port: 8443, tls: {mode: Passthrough}}
  - {name: b, protocol: TLS, port: 9443, tls: {mode: Passthrough}}
  - {name: raw, protocol: TCP, port: 80}
"#;

    fn compiled() -> Compiled {
        let loaded =
            load(&[Source { name: "t".into(), text: GATEWAY.into() }], &LoadOptions::default())
                .unwrap();
        compile(
            &loaded.resources,
            &CompileOptions {
                default_bind: "127.0.0.1".parse().unwrap(),
                now: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            },
        )
    }

    fn cond<'c>(c: &'c [Condition], t: &str) -> (&'c str, &'c str, &'c str) {
        let c = c.iter().find(|c| c.type_ == t).unwrap();
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_failures_the_status_is_unchanged() {
        let mut c = compiled();
        let before = c.status_list();
        apply_bind_failures(&mut c, &[]);
        apply_bind_failures(&mut c, &[(addr("127.0.0.1:1"), "in use".into())]);
        assert_eq!(c.status_list(), before);
    }

    #[test]
    fn a_listener_on_a_busy_port_is_port_unavailable_and_pending() {
        let mut c = compiled();
        apply_bind_failures(&mut c, &[(addr("127.0.0.1:8443"), "Address in use".into())]);
        let st = c.gateways[0].status.as_ref().unwrap();
        let a = &st.listeners[0].conditions;
        assert_eq!(
            cond(a, "Accepted"),
            ("False", "PortUnavailable", "cannot listen on 127.0.0.1:8443: Address in use")
        );
        assert_eq!(
            cond(a, "Programmed"),
            (
                "False",
                "Pending",
                "not listening on 127.0.0.1:8443: Address in use; retried on the next reload"
            )
        );
        assert_eq!(cond(&st.listeners[1].conditions, "Programmed").0, "True");
        assert_eq!(cond(&st.conditions, "Programmed").0, "True");
        assert_eq!(
            cond(&st.conditions, "Accepted"),
            ("True", "ListenersNotValid", "2 of 3 listeners are not valid: a, raw")
        );
        assert_eq!(st.addresses.len(), 1);
    }

    #[test]
    fn a_gateway_with_no_listener_listening_is_pending_without_addresses() {
        let mut c = compiled();
        let failures = [
            (addr("127.0.0.1:8443"), "Address in use".to_string()),
            (addr("127.0.0.1:9443"), "Permission denied".to_string()),
        ];
        apply_bind_failures(&mut c, &failures);
        let st = c.gateways[0].status.as_ref().unwrap();
        assert_eq!(cond(&st.conditions, "Programmed").0, "False");
        assert_eq!(cond(&st.conditions, "Programmed").1, "Pending");
        assert_eq!(cond(&st.conditions, "Accepted").0, "False");
        assert!(st.addresses.is_empty());
        let v = c.status_list();
        assert!(v["items"][0]["status"]["listeners"][0].get("sockets").is_none());
    }
}
