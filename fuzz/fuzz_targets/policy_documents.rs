//! `flowsql policy whatif POLICY...`: any text is policies or an error naming the file, the
//! document and the field, never a panic; accepted policies compile under both semantics or
//! are refused by field, and a compiled set decides any connection, the same way twice.
#![no_main]

use flow_spec::policy::{self, Connection, Endpoint, Request, Semantics, Transport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match policy::parse("p.yaml", text) {
        Ok(loaded) => loaded,
        Err(error) => {
            assert!(error.to_string().starts_with("p.yaml"), "{error}");
            return;
        }
    };
    let pod = |ns: &str, app: &str, ip: &str| {
        Endpoint::new(&[format!("k8s:app={app}")], Some(ns), Some(ip), &[])
    };
    let world = Endpoint::new(&["reserved:world".into()], None, Some("1.2.3.4"), &["api.example.com".into()]);
    let connections = [
        Connection { source: pod("default", "a", "10.0.0.1"), destination: pod("default", "b", "10.0.0.2"), transport: Transport::Tcp, port: 80, request: None },
        Connection { source: pod("prod", "a", "10.0.0.1"), destination: world.clone(), transport: Transport::Udp, port: 53, request: Some(Request::Dns { query: "api.example.com.".into() }) },
        Connection { source: world, destination: pod("prod", "b", "10.0.0.2"), transport: Transport::Tcp, port: 8080, request: Some(Request::Http { method: "GET".into(), path: "/a?b".into(), host: "b".into(), headers: None }) },
    ];
    for semantics in [Semantics::Cilium, Semantics::Kubernetes] {
        match policy::compile(&loaded, semantics, "default") {
            Ok(set) => {
                for c in &connections {
                    assert_eq!(set.decide(c), set.decide(c));
                }
            }
            Err(error) => assert!(error.to_string().starts_with("p.yaml, document "), "{error}"),
        }
    }
});
