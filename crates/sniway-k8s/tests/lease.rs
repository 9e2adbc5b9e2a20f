//! Leader election against the simulated API server.

use std::time::Duration;

use serde_json::json;
use sniway_k8s::lease::{Leadership, LeaseOptions};
use sniway_testkit::apiserver::{ApiServer, WAIT_LIMIT};
use tokio::sync::watch;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/infra/leases/leader";

fn opts(identity: &str) -> LeaseOptions {
    LeaseOptions {
        name: "leader".into(),
        namespace: "infra".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(500),
        retry_period: Duration::from_millis(50),
    }
}

async fn becomes(rx: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(WAIT_LIMIT, rx.wait_for(|l| *l == want))
        .await
        .expect("in time")
        .expect("the election runs");
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_and_leads_again_once_it_can() {
    let server = ApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let leadership = Leadership::start(client, opts("a"));
    let mut leading = leadership.is_leader();
    becomes(&mut leading, true).await;
    let lease = server.get("coordination.k8s.io/v1", "Lease", Some("infra"), "leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);

    // Every request fails for a while: past the renew deadline, it steps down.
    server.fail_next(LEASE_PATH, 1_000_000);
    becomes(&mut leading, false).await;
    server.fail_next(LEASE_PATH, 0);
    // Its own claim is still there: it renews and leads again.
    becomes(&mut leading, true).await;
    leadership.release().await;
    let lease = server.get("coordination.k8s.io/v1", "Lease", Some("infra"), "leader").unwrap();
    assert!(lease["spec"].get("holderIdentity").is_none());
}

#[tokio::test]
async fn of_two_candidates_one_leads_and_the_other_follows_until_released() {
    let server = ApiServer::start().await.unwrap();
    let a = Leadership::start(server.client().await.unwrap(), opts("a"));
    let mut a_leads = a.is_leader();
    becomes(&mut a_leads, true).await;
    let b = Leadership::start(server.client().await.unwrap(), opts("b"));
    let b_leads = b.is_leader();
    // b has tried (read the Lease held by a) at least twice, and follows.
    let reads_by_now = server.requests().iter().filter(|r| r.path == LEASE_PATH).count();
    assert!(
        server
            .wait_for_requests(
                |r| r.iter().filter(|r| r.path == LEASE_PATH).count() >= reads_by_now + 4
            )
            .await
    );
    assert!(!*b_leads.borrow());
    assert!(*a_leads.borrow());

    a.release().await;
    let mut b_leads = b_leads;
    becomes(&mut b_leads, true).await;
    let lease = server.get("coordination.k8s.io/v1", "Lease", Some("infra"), "leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], json!(1));
    b.release().await;
}
