//! Hubble enum names by number (cilium v1.19.4 `flow.proto`).
//!
//! protojson writes enums as names, but readers must accept numbers too. The flow schema always
//! stores the name; the zero value ("unknown"/"unset") is stored as NULL because protojson omits
//! it, so a row looks the same whichever way the JSON spelled it.

/// An enum's names by number. Index 0 is the zero value (stored as NULL).
pub(crate) struct EnumNames {
    pub names: &'static [(u32, &'static str)],
}

impl EnumNames {
    /// The stored value for a JSON value (name or decimal number): `None` for the zero value.
    /// An unknown number is kept as written, so a newer Cilium's value is not lost.
    pub fn normalize<'a>(&self, raw: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let zero = self.names.first().map(|(_, n)| *n);
        if raw.is_empty() || Some(raw) == zero {
            return None;
        }
        match raw.parse::<u32>() {
            Ok(0) => None,
            Ok(number) => Some(match self.names.iter().find(|(n, _)| *n == number) {
                Some((_, name)) => std::borrow::Cow::Borrowed(*name),
                None => std::borrow::Cow::Borrowed(raw),
            }),
            Err(_) => Some(std::borrow::Cow::Borrowed(raw)),
        }
    }

    /// The number of a stored value, the inverse of [`Self::by_number`]: a known name, or the
    /// digits an unknown number was kept as; 0 (the zero value) for anything else.
    pub fn number_of(&self, stored: &str) -> i32 {
        match self.names.iter().find(|(_, name)| *name == stored) {
            Some((number, _)) => *number as i32,
            None => stored.parse().unwrap_or(0),
        }
    }

    /// The stored value for an enum number read from the protobuf wire: as [`Self::normalize`]
    /// gives for the same number written in JSON (zero NULL, unknown numbers kept as digits).
    pub fn by_number(&self, number: i32) -> Option<std::borrow::Cow<'static, str>> {
        if number == 0 {
            return None;
        }
        Some(
            match u32::try_from(number)
                .ok()
                .and_then(|n| self.names.iter().find(|(known, _)| *known == n))
            {
                Some((_, name)) => std::borrow::Cow::Borrowed(*name),
                None => std::borrow::Cow::Owned(number.to_string()),
            },
        )
    }
}

pub(crate) const VERDICT: EnumNames = EnumNames {
    names: &[
        (0, "VERDICT_UNKNOWN"),
        (1, "FORWARDED"),
        (2, "DROPPED"),
        (3, "ERROR"),
        (4, "AUDIT"),
        (5, "REDIRECTED"),
        (6, "TRACED"),
        (7, "TRANSLATED"),
    ],
};

pub(crate) const FLOW_TYPE: EnumNames = EnumNames {
    names: &[(0, "UNKNOWN_TYPE"), (1, "L3_L4"), (2, "L7"), (3, "SOCK")],
};

pub(crate) const AUTH_TYPE: EnumNames = EnumNames {
    names: &[(0, "DISABLED"), (1, "SPIRE"), (2, "TEST_ALWAYS_FAIL")],
};

pub(crate) const TRAFFIC_DIRECTION: EnumNames = EnumNames {
    names: &[
        (0, "TRAFFIC_DIRECTION_UNKNOWN"),
        (1, "INGRESS"),
        (2, "EGRESS"),
    ],
};

pub(crate) const IP_VERSION: EnumNames = EnumNames {
    names: &[(0, "IP_NOT_USED"), (1, "IPv4"), (2, "IPv6")],
};

pub(crate) const L7_FLOW_TYPE: EnumNames = EnumNames {
    names: &[
        (0, "UNKNOWN_L7_TYPE"),
        (1, "REQUEST"),
        (2, "RESPONSE"),
        (3, "SAMPLE"),
    ],
};

pub(crate) const TRACE_OBSERVATION_POINT: EnumNames = EnumNames {
    names: &[
        (0, "UNKNOWN_POINT"),
        (1, "TO_PROXY"),
        (2, "TO_HOST"),
        (3, "TO_STACK"),
        (4, "TO_OVERLAY"),
        (5, "FROM_ENDPOINT"),
        (6, "FROM_PROXY"),
        (7, "FROM_HOST"),
        (8, "FROM_STACK"),
        (9, "FROM_OVERLAY"),
        (10, "FROM_NETWORK"),
        (11, "TO_NETWORK"),
        (12, "FROM_CRYPTO"),
        (13, "TO_CRYPTO"),
        (101, "TO_ENDPOINT"),
    ],
};

pub(crate) const TRACE_REASON: EnumNames = EnumNames {
    names: &[
        (0, "TRACE_REASON_UNKNOWN"),
        (1, "NEW"),
        (2, "ESTABLISHED"),
        (3, "REPLY"),
        (4, "RELATED"),
        (5, "REOPENED"),
        (6, "SRV6_ENCAP"),
        (7, "SRV6_DECAP"),
        (8, "ENCRYPT_OVERLAY"),
    ],
};

pub(crate) const SOCK_XLATE_POINT: EnumNames = EnumNames {
    names: &[
        (0, "SOCK_XLATE_POINT_UNKNOWN"),
        (1, "SOCK_XLATE_POINT_PRE_DIRECTION_FWD"),
        (2, "SOCK_XLATE_POINT_POST_DIRECTION_FWD"),
        (3, "SOCK_XLATE_POINT_PRE_DIRECTION_REV"),
        (4, "SOCK_XLATE_POINT_POST_DIRECTION_REV"),
    ],
};

pub(crate) const TUNNEL_PROTOCOL: EnumNames = EnumNames {
    names: &[(0, "UNKNOWN"), (1, "VXLAN"), (2, "GENEVE")],
};

pub(crate) const LOST_EVENT_SOURCE: EnumNames = EnumNames {
    names: &[
        (0, "UNKNOWN_LOST_EVENT_SOURCE"),
        (1, "PERF_EVENT_RING_BUFFER"),
        (2, "OBSERVER_EVENTS_QUEUE"),
        (3, "HUBBLE_RING_BUFFER"),
    ],
};

pub(crate) const DROP_REASON: EnumNames = EnumNames {
    names: &[
        (0, "DROP_REASON_UNKNOWN"),
        (130, "INVALID_SOURCE_MAC"),
        (131, "INVALID_DESTINATION_MAC"),
        (132, "INVALID_SOURCE_IP"),
        (133, "POLICY_DENIED"),
        (134, "INVALID_PACKET_DROPPED"),
        (135, "CT_TRUNCATED_OR_INVALID_HEADER"),
        (136, "CT_MISSING_TCP_ACK_FLAG"),
        (137, "CT_UNKNOWN_L4_PROTOCOL"),
        (138, "CT_CANNOT_CREATE_ENTRY_FROM_PACKET"),
        (139, "UNSUPPORTED_L3_PROTOCOL"),
        (140, "MISSED_TAIL_CALL"),
        (141, "ERROR_WRITING_TO_PACKET"),
        (142, "UNKNOWN_L4_PROTOCOL"),
        (143, "UNKNOWN_ICMPV4_CODE"),
        (144, "UNKNOWN_ICMPV4_TYPE"),
        (145, "UNKNOWN_ICMPV6_CODE"),
        (146, "UNKNOWN_ICMPV6_TYPE"),
        (147, "ERROR_RETRIEVING_TUNNEL_KEY"),
        (148, "ERROR_RETRIEVING_TUNNEL_OPTIONS"),
        (149, "INVALID_GENEVE_OPTION"),
        (150, "UNKNOWN_L3_TARGET_ADDRESS"),
        (151, "STALE_OR_UNROUTABLE_IP"),
        (152, "NO_MATCHING_LOCAL_CONTAINER_FOUND"),
        (153, "ERROR_WHILE_CORRECTING_L3_CHECKSUM"),
        (154, "ERROR_WHILE_CORRECTING_L4_CHECKSUM"),
        (155, "CT_MAP_INSERTION_FAILED"),
        (156, "INVALID_IPV6_EXTENSION_HEADER"),
        (157, "IP_FRAGMENTATION_NOT_SUPPORTED"),
        (158, "SERVICE_BACKEND_NOT_FOUND"),
        (160, "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT"),
        (161, "FAILED_TO_INSERT_INTO_PROXYMAP"),
        (162, "REACHED_EDT_RATE_LIMITING_DROP_HORIZON"),
        (163, "UNKNOWN_CONNECTION_TRACKING_STATE"),
        (164, "LOCAL_HOST_IS_UNREACHABLE"),
        (165, "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION"),
        (166, "UNSUPPORTED_L2_PROTOCOL"),
        (167, "NO_MAPPING_FOR_NAT_MASQUERADE"),
        (168, "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE"),
        (169, "FIB_LOOKUP_FAILED"),
        (170, "ENCAPSULATION_TRAFFIC_IS_PROHIBITED"),
        (171, "INVALID_IDENTITY"),
        (172, "UNKNOWN_SENDER"),
        (173, "NAT_NOT_NEEDED"),
        (174, "IS_A_CLUSTERIP"),
        (175, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND"),
        (176, "FORBIDDEN_ICMPV6_MESSAGE"),
        (177, "DENIED_BY_LB_SRC_RANGE_CHECK"),
        (178, "SOCKET_LOOKUP_FAILED"),
        (179, "SOCKET_ASSIGN_FAILED"),
        (180, "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL"),
        (181, "POLICY_DENY"),
        (182, "VLAN_FILTERED"),
        (183, "INVALID_VNI"),
        (184, "INVALID_TC_BUFFER"),
        (185, "NO_SID"),
        (186, "MISSING_SRV6_STATE"),
        (187, "NAT46"),
        (188, "NAT64"),
        (189, "AUTH_REQUIRED"),
        (190, "CT_NO_MAP_FOUND"),
        (191, "SNAT_NO_MAP_FOUND"),
        (192, "INVALID_CLUSTER_ID"),
        (193, "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP"),
        (194, "NO_EGRESS_GATEWAY"),
        (195, "UNENCRYPTED_TRAFFIC"),
        (196, "TTL_EXCEEDED"),
        (197, "NO_NODE_ID"),
        (198, "DROP_RATE_LIMITED"),
        (199, "IGMP_HANDLED"),
        (200, "IGMP_SUBSCRIBED"),
        (201, "MULTICAST_HANDLED"),
        (202, "DROP_HOST_NOT_READY"),
        (203, "DROP_EP_NOT_READY"),
        (204, "DROP_NO_EGRESS_IP"),
        (205, "DROP_PUNT_PROXY"),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_normalize_alike() {
        assert_eq!(VERDICT.normalize("DROPPED").as_deref(), Some("DROPPED"));
        assert_eq!(VERDICT.normalize("2").as_deref(), Some("DROPPED"));
        assert_eq!(VERDICT.normalize("0"), None);
        assert_eq!(VERDICT.normalize("VERDICT_UNKNOWN"), None);
        assert_eq!(
            DROP_REASON.normalize("133").as_deref(),
            Some("POLICY_DENIED")
        );
        assert_eq!(
            TRACE_OBSERVATION_POINT.normalize("101").as_deref(),
            Some("TO_ENDPOINT")
        );
        // A value from a newer Cilium is kept, not dropped.
        assert_eq!(DROP_REASON.normalize("250").as_deref(), Some("250"));
        assert_eq!(
            VERDICT.normalize("NEW_VERDICT").as_deref(),
            Some("NEW_VERDICT")
        );
    }
}
