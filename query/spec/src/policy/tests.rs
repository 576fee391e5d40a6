//! The documented examples, each with the verdicts the Kubernetes and Cilium docs give
//! (kubernetes.io "Network Policies"; docs.cilium.io policy language, layer 3/4/7, deny
//! policies), on recorded-shaped endpoints (Hubble identity labels).

use super::compile::{Action, Direction, Semantics};
use super::decide::{Connection, Endpoint, L7State, Outcome, Request, Transport};
use super::*;

fn set(yaml: &str, semantics: Semantics) -> PolicySet {
    let loaded = parse("test.yaml", yaml).unwrap();
    compile(&loaded, semantics, "default").unwrap()
}

fn cilium(yaml: &str) -> PolicySet {
    set(yaml, Semantics::Cilium)
}

fn pod(ns: &str, labels: &[&str], ip: &str) -> Endpoint {
    let labels: Vec<String> = labels.iter().map(|l| format!("k8s:{l}")).collect();
    Endpoint::new(&labels, Some(ns), Some(ip), &[])
}

fn world(ip: &str, names: &[&str]) -> Endpoint {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    Endpoint::new(&["reserved:world".to_owned()], None, Some(ip), &names)
}

fn tcp(source: &Endpoint, destination: &Endpoint, port: u16) -> Connection {
    Connection {
        source: source.clone(),
        destination: destination.clone(),
        transport: Transport::Tcp,
        port,
        request: None,
    }
}

fn http(source: &Endpoint, destination: &Endpoint, method: &str, path: &str) -> Connection {
    Connection {
        request: Some(Request::Http {
            method: method.into(),
            path: path.into(),
            host: "backend".into(),
            headers: Some(Vec::new()),
        }),
        ..tcp(source, destination, 80)
    }
}

fn outcome(policies: &PolicySet, c: &Connection) -> Outcome {
    policies.decide(c).outcome
}

const ALLOWED: Outcome = Outcome::Allowed;
const DENIED: Outcome = Outcome::Denied;

#[test]
fn knp_default_deny_and_allow_all() {
    let deny = set(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny-ingress, namespace: prod}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
        Semantics::Kubernetes,
    );
    let a = pod("prod", &["app=a"], "10.0.0.1");
    let b = pod("prod", &["app=b"], "10.0.0.2");
    let other = pod("dev", &["app=c"], "10.0.1.3");
    assert_eq!(outcome(&deny, &tcp(&a, &b, 80)), DENIED);
    assert_eq!(
        outcome(&deny, &tcp(&b, &other, 80)),
        ALLOWED,
        "egress not isolated"
    );
    let verdict = deny.decide(&tcp(&other, &a, 80));
    assert_eq!(verdict.outcome, DENIED);
    assert_eq!(
        verdict.ingress.by.as_ref().unwrap().to_string(),
        "prod/default-deny-ingress (NetworkPolicy) default deny (ingress)"
    );
    // The node reaches its pods.
    let host = Endpoint::new(
        &["reserved:host".to_owned()],
        None,
        Some("192.168.1.1"),
        &[],
    );
    assert_eq!(outcome(&deny, &tcp(&host, &a, 80)), ALLOWED);
    let allow_all = set(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all-ingress, namespace: prod}\nspec:\n  podSelector: {}\n  ingress: [{}]\n  policyTypes: [Ingress]\n",
        Semantics::Kubernetes,
    );
    assert_eq!(outcome(&allow_all, &tcp(&other, &a, 80)), ALLOWED);
    assert_eq!(
        outcome(&allow_all, &tcp(&world("1.2.3.4", &[]), &a, 9)),
        ALLOWED
    );
    // Egress default deny, the documented pair.
    let egress = set(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny-egress, namespace: prod}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n",
        Semantics::Kubernetes,
    );
    assert_eq!(outcome(&egress, &tcp(&a, &other, 53)), DENIED);
    assert_eq!(outcome(&egress, &tcp(&other, &a, 53)), ALLOWED);
}

/// The `test-network-policy` example of the Kubernetes docs.
const TEST_NETWORK_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 5978
"#;

#[test]
fn knp_documented_example_with_ip_block_and_except() {
    for semantics in [Semantics::Kubernetes, Semantics::Cilium] {
        let p = set(TEST_NETWORK_POLICY, semantics);
        let db = pod("default", &["role=db"], "10.1.0.9");
        let frontend = pod("default", &["role=frontend"], "10.1.0.10");
        let mut in_project = pod("team", &["app=x"], "10.1.0.11");
        in_project.labels.push(labels::Label::new(
            "k8s",
            "io.cilium.k8s.namespace.labels.project",
            "myproject",
        ));
        let elsewhere = pod("team2", &["role=frontend"], "10.1.0.12");
        assert_eq!(outcome(&p, &tcp(&frontend, &db, 6379)), ALLOWED);
        assert_eq!(outcome(&p, &tcp(&frontend, &db, 6380)), DENIED);
        assert_eq!(outcome(&p, &tcp(&in_project, &db, 6379)), ALLOWED);
        assert_eq!(
            outcome(&p, &tcp(&elsewhere, &db, 6379)),
            DENIED,
            "podSelector is the policy's namespace"
        );
        assert_eq!(
            outcome(&p, &tcp(&world("172.17.0.5", &[]), &db, 6379)),
            ALLOWED
        );
        assert_eq!(
            outcome(&p, &tcp(&world("172.17.1.5", &[]), &db, 6379)),
            DENIED,
            "except"
        );
        assert_eq!(
            outcome(&p, &tcp(&db, &world("10.0.0.5", &[]), 5978)),
            ALLOWED
        );
        assert_eq!(outcome(&p, &tcp(&db, &world("10.0.0.5", &[]), 80)), DENIED);
        // UDP on the port: the KNP protocol default is TCP, here given.
        let mut udp = tcp(&frontend, &db, 6379);
        udp.transport = Transport::Udp;
        assert_eq!(outcome(&p, &udp), DENIED);
        // A pod whose address is in the ipBlock: Cilium never matches pods with CIDRs.
        let pod_in_block = pod("default", &["app=cache"], "10.0.0.7");
        let expected = match semantics {
            Semantics::Kubernetes => ALLOWED,
            Semantics::Cilium => DENIED,
        };
        assert_eq!(
            outcome(&p, &tcp(&db, &pod_in_block, 5978)),
            expected,
            "{semantics:?}"
        );
    }
}

#[test]
fn knp_namespace_and_pod_selector_in_one_element_is_and_in_two_is_or() {
    let and = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: db}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {user: alice}}\n      podSelector: {matchLabels: {role: client}}\n";
    let or = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: db}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {user: alice}}\n    - podSelector: {matchLabels: {role: client}}\n";
    let target = pod("db", &["app=db"], "10.0.0.1");
    let mut alice_client = pod("alice-ns", &["role=client"], "10.0.0.2");
    alice_client.labels.push(labels::Label::new(
        "k8s",
        "io.cilium.k8s.namespace.labels.user",
        "alice",
    ));
    let mut alice_other = alice_client.clone();
    alice_other.labels.retain(|l| l.key != "role");
    let local_client = pod("db", &["role=client"], "10.0.0.3");
    let and = set(and, Semantics::Kubernetes);
    let or = set(or, Semantics::Kubernetes);
    assert_eq!(outcome(&and, &tcp(&alice_client, &target, 1)), ALLOWED);
    assert_eq!(outcome(&and, &tcp(&alice_other, &target, 1)), DENIED);
    assert_eq!(outcome(&and, &tcp(&local_client, &target, 1)), DENIED);
    assert_eq!(outcome(&or, &tcp(&alice_other, &target, 1)), ALLOWED);
    assert_eq!(outcome(&or, &tcp(&local_client, &target, 1)), ALLOWED);
    // namespaceSelector by name, through the label every namespace has.
    let by_name = set("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: db}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: alice-ns}}\n", Semantics::Kubernetes);
    assert_eq!(outcome(&by_name, &tcp(&alice_other, &target, 1)), ALLOWED);
    assert_eq!(outcome(&by_name, &tcp(&local_client, &target, 1)), DENIED);
}

#[test]
fn cilium_l3_l4_and_l7_examples() {
    let l3 = cilium("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: l3-rule, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {role: backend}}\n  ingress:\n  - fromEndpoints:\n    - matchLabels: {role: frontend}\n");
    let backend = pod("default", &["role=backend"], "10.0.0.1");
    let frontend = pod("default", &["role=frontend"], "10.0.0.2");
    let other = pod("default", &["role=other"], "10.0.0.3");
    let frontend_elsewhere = pod("dev", &["role=frontend"], "10.0.0.4");
    assert_eq!(outcome(&l3, &tcp(&frontend, &backend, 1234)), ALLOWED);
    assert_eq!(outcome(&l3, &tcp(&other, &backend, 80)), DENIED);
    assert_eq!(
        outcome(&l3, &tcp(&frontend_elsewhere, &backend, 80)),
        DENIED,
        "implicit namespace"
    );
    let l4 = cilium("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: l4-rule, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: myService}}\n  egress:\n  - toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n");
    let service = pod("default", &["app=myService"], "10.0.0.5");
    assert_eq!(
        outcome(&l4, &tcp(&service, &world("8.8.8.8", &[]), 80)),
        ALLOWED,
        "L4-only: any peer"
    );
    assert_eq!(outcome(&l4, &tcp(&service, &frontend, 443)), DENIED);
    let mut icmp = tcp(&service, &frontend, 0);
    icmp.transport = Transport::Other;
    assert_eq!(outcome(&l4, &icmp), DENIED, "ICMP blocked by an L4 policy");
    let l7 = cilium(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1, namespace: default}
spec:
  description: "Allow HTTP GET /public from env=prod to app=service"
  endpointSelector:
    matchLabels: {app: service}
  ingress:
  - fromEndpoints:
    - matchLabels: {env: prod}
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
      rules:
        http:
        - method: "GET"
          path: "/public"
"#,
    );
    let svc = pod("default", &["app=service"], "10.0.0.6");
    let prod = pod("default", &["env=prod"], "10.0.0.7");
    assert_eq!(outcome(&l7, &http(&prod, &svc, "GET", "/public")), ALLOWED);
    let denied = l7.decide(&http(&prod, &svc, "GET", "/private"));
    assert_eq!(denied.outcome, DENIED);
    assert_eq!(denied.l7(), L7State::Decided);
    assert_eq!(
        outcome(&l7, &http(&prod, &svc, "GET", "/public?x=1")),
        DENIED,
        "the path includes the query"
    );
    assert_eq!(outcome(&l7, &http(&prod, &svc, "PUT", "/public")), DENIED);
    let proxied = l7.decide(&tcp(&prod, &svc, 80));
    assert_eq!((proxied.outcome, proxied.l7()), (ALLOWED, L7State::Proxied));
}

#[test]
fn cilium_deny_rules_win_and_the_empty_rule_trap() {
    let p = cilium(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: external-lockdown, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny:
  - fromEntities: [world]
  ingress:
  - fromEntities: [all]
"#,
    );
    let web = pod("default", &["app=web"], "10.0.0.1");
    let verdict = p.decide(&tcp(&world("1.1.1.1", &[]), &web, 80));
    assert_eq!(verdict.outcome, DENIED);
    assert_eq!(
        verdict.ingress.by.as_ref().unwrap().action(),
        Some(Action::Deny)
    );
    assert_eq!(
        verdict.ingress.by.as_ref().unwrap().to_string(),
        "default/external-lockdown (CiliumNetworkPolicy) ingressDeny[0]"
    );
    assert_eq!(
        outcome(&p, &tcp(&pod("other", &["x=y"], "10.0.0.2"), &web, 80)),
        ALLOWED
    );
    // CNP `ingress: [{}]` allows nothing (the docs' default-deny policy); KNP's allows all.
    let cnp = cilium("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: empire-default-deny, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {org: empire}}\n  ingress:\n  - {}\n");
    let deathstar = pod("default", &["org=empire", "class=deathstar"], "10.0.0.3");
    let tiefighter = pod("default", &["org=empire", "class=tiefighter"], "10.0.0.4");
    assert_eq!(outcome(&cnp, &tcp(&tiefighter, &deathstar, 80)), DENIED);
    let knp = set("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  podSelector: {matchLabels: {org: empire}}\n  ingress:\n  - {}\n", Semantics::Kubernetes);
    assert_eq!(outcome(&knp, &tcp(&tiefighter, &deathstar, 80)), ALLOWED);
    // `fromEndpoints: [{}]` in a CNP is its own namespace only.
    let same_ns = cilium("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: allow-all-to-victim, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {role: victim}}\n  ingress:\n  - fromEndpoints: [{}]\n");
    let victim = pod("default", &["role=victim"], "10.0.0.5");
    assert_eq!(outcome(&same_ns, &tcp(&tiefighter, &victim, 80)), ALLOWED);
    assert_eq!(
        outcome(
            &same_ns,
            &tcp(&pod("kube-system", &["k8s-app=x"], "10.0.0.6"), &victim, 80)
        ),
        DENIED
    );
    assert_eq!(
        outcome(&same_ns, &tcp(&world("1.1.1.1", &[]), &victim, 80)),
        DENIED
    );
}

#[test]
fn clusterwide_entities_fqdns_and_default_deny_switch() {
    let ccnp = cilium("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: all-pods}\nspec:\n  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n");
    let a = pod("ns1", &["app=a"], "10.0.0.1");
    let b = pod("ns2", &["app=b"], "10.0.0.2");
    assert_eq!(
        outcome(&ccnp, &tcp(&a, &b, 80)),
        ALLOWED,
        "any pod, any namespace"
    );
    assert_eq!(
        outcome(&ccnp, &tcp(&world("1.1.1.1", &[]), &b, 80)),
        DENIED,
        "never reserved entities"
    );
    let egress = cilium(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-outside, namespace: ns1}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [cluster]
  - toFQDNs:
    - matchPattern: "*.example.com"
    - matchName: "api.github.com"
  - toCIDRSet:
    - cidr: 192.168.0.0/16
      except: [192.168.7.0/24]
"#,
    );
    assert_eq!(outcome(&egress, &tcp(&a, &b, 80)), ALLOWED);
    assert_eq!(
        outcome(
            &egress,
            &tcp(&a, &world("5.5.5.5", &["www.example.com."]), 443)
        ),
        ALLOWED
    );
    assert_eq!(
        outcome(
            &egress,
            &tcp(&a, &world("5.5.5.6", &["a.b.example.com"]), 443)
        ),
        DENIED,
        "* is one label"
    );
    assert_eq!(
        outcome(
            &egress,
            &tcp(&a, &world("5.5.5.7", &["API.GitHub.com"]), 443)
        ),
        ALLOWED
    );
    assert_eq!(
        outcome(&egress, &tcp(&a, &world("5.5.5.8", &[]), 443)),
        Outcome::Uncertain("unknown FQDN")
    );
    assert_eq!(
        outcome(&egress, &tcp(&a, &world("192.168.1.1", &[]), 443)),
        ALLOWED
    );
    assert_eq!(
        outcome(&egress, &tcp(&a, &world("192.168.7.1", &[]), 443)),
        Outcome::Uncertain("unknown FQDN")
    );
    // Without default deny for egress, unmatched traffic goes.
    let audit_like = cilium("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: ns1}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  enableDefaultDeny: {egress: false}\n  egress:\n  - toEntities: [world]\n");
    assert_eq!(outcome(&audit_like, &tcp(&a, &b, 80)), ALLOWED);
    let v = audit_like.decide(&tcp(&a, &b, 80));
    assert_eq!(v.egress.by, None);
    assert_eq!(v.ingress.by, None);
}

#[test]
fn ports_ranges_names_and_dns_rules() {
    let p = cilium(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEndpoints: [{matchLabels: {app: b}}]
    toPorts:
    - ports: [{port: "8000", endPort: 8010, protocol: TCP}, {port: metrics}]
  - toEndpoints:
    - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns:
        - matchPattern: "*.ns.svc.cluster.local"
"#,
    );
    let a = pod("ns", &["app=a"], "10.0.0.1");
    let b = pod("ns", &["app=b"], "10.0.0.2");
    let dns = pod("kube-system", &["k8s-app=kube-dns"], "10.0.0.10");
    assert_eq!(outcome(&p, &tcp(&a, &b, 8005)), ALLOWED);
    assert_eq!(
        outcome(&p, &tcp(&a, &b, 8011)),
        Outcome::Uncertain("named port")
    );
    let query = |name: &str| Connection {
        transport: Transport::Udp,
        request: Some(Request::Dns { query: name.into() }),
        ..tcp(&a, &dns, 53)
    };
    assert_eq!(outcome(&p, &query("b.ns.svc.cluster.local.")), ALLOWED);
    assert_eq!(outcome(&p, &query("evil.com.")), DENIED);
    assert_eq!(
        outcome(&p, &query("a.b.ns.svc.cluster.local")),
        DENIED,
        "* is one label"
    );
    assert_eq!(
        p.decide(&query("evil.com."))
            .egress
            .by
            .as_ref()
            .unwrap()
            .direction,
        Direction::Egress
    );
}

#[test]
fn bad_documents_name_the_file_the_document_and_the_field() {
    let err = |yaml: &str| -> String {
        match parse("p.yaml", yaml) {
            Err(e) => e.to_string(),
            Ok(loaded) => compile(&loaded, Semantics::Cilium, "default")
                .unwrap_err()
                .to_string(),
        }
    };
    let typo = err("---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {}\n  egress:\n  - toEndpoint: [{}]\n");
    assert!(typo.starts_with("p.yaml, document 1: spec.egress[0].toEndpoint: unknown field `toEndpoint`, expected one of `toEndpoints`"), "{typo}");
    let kind = err("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n---\n");
    assert!(
        kind.contains("document 1") && kind.contains("kind \"Pod\""),
        "{kind}"
    );
    let second = err("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b}\nspec: {podSelector: {}, ingress: [{ports: [{port: 99999}]}]}\n");
    assert!(
        second.contains("document 2") && second.contains("spec.ingress[0].ports[0].port"),
        "{second}"
    );
    let refused = err("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {}\n  egress:\n  - toServices: [{k8sService: {serviceName: x, namespace: y}}]\n");
    assert!(
        refused.contains("spec.egress[0].toServices") && refused.contains("not evaluated"),
        "{refused}"
    );
    let list = err("apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: a, namespace: x, uid: u, resourceVersion: '1'}\n  spec: {podSelector: {}}\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: b}\n  spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: nope}}]}]}\n");
    assert!(
        list.contains("document 1, item 2") && list.contains("ipBlock.cidr"),
        "{list}"
    );
    assert!(err(": : :").contains("not YAML"));
    // A kubectl dump loads, status and metadata extras included.
    let dump = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: ''}\nitems:\n- apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  metadata: {name: a, namespace: x, generation: 3, annotations: {k: v}}\n  spec: {endpointSelector: {}, ingress: [{}]}\n  status: {conditions: []}\n";
    assert_eq!(parse("dump.yaml", dump).unwrap().len(), 1);
}
