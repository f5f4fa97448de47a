"""Netlink numbers, in one place (linux/netlink.h, linux/rtnetlink.h, linux/fib_rules.h).

Every module that speaks netlink itself (the lean rtnetlink codec, the batch
socket, the event source, WireGuard's generic netlink) takes its numbers from
here. Attribute numbers of one message type stay beside that message's table
in :mod:`netd.kernel.rtnl_codec` (they are its data, not shared constants).
"""

from __future__ import annotations

import struct

# ---- sockets (linux/netlink.h, linux/socket.h) -------------------------------------------

NETLINK_ROUTE = 0
NETLINK_GENERIC = 16
SOL_NETLINK = 270
#: setsockopt options at SOL_NETLINK.
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_NO_ENOBUFS = 5
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
#: Socket buffer sizes past rmem_max/wmem_max (root only).
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

# ---- the message header --------------------------------------------------------------------

#: struct nlmsghdr: length, type, flags, sequence number, port id.
NLMSGHDR = struct.Struct("=IHHII")
#: struct nlattr: length, type.
NLA_HDR = struct.Struct("=HH")
#: Drops NLA_F_NESTED / NLA_F_NET_BYTEORDER from an attribute type.
NLA_TYPE_MASK = 0x3FFF
NLA_F_NESTED = 0x8000

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4

NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x8, 0x10
#: GET modifiers.
NLM_F_ROOT, NLM_F_MATCH, NLM_F_DUMP = 0x100, 0x200, 0x300
#: NEW modifiers.
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
#: Ack flags: the error message carries no copy of the request / carries TLVs.
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLMSGERR_ATTR_MSG = 1

#: Flags of an "add, fail if it exists" request, of a "replace or add" one, of a delete.
CREATE_EXCL = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
CREATE_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
DELETE = NLM_F_REQUEST | NLM_F_ACK

# ---- rtnetlink message types (linux/rtnetlink.h) -------------------------------------------

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34

#: Multicast groups (RTNLGRP_*), and their legacy bit masks for ``bind`` (bit group-1).
RTNLGRP_LINK = 1
RTNLGRP_IPV4_IFADDR = 5
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV4_RULE = 8
RTNLGRP_IPV6_IFADDR = 9
RTNLGRP_IPV6_ROUTE = 11
RTNLGRP_IPV6_RULE = 19


def group_mask(*groups: int) -> int:
    """The ``bind`` bit mask of RTNLGRP_* groups (all of ours are below 32)."""
    mask = 0
    for g in groups:
        mask |= 1 << (g - 1)
    return mask


RTMGRP_LINK = group_mask(RTNLGRP_LINK)
RTMGRP_IPV4_IFADDR = group_mask(RTNLGRP_IPV4_IFADDR)
RTMGRP_IPV4_ROUTE = group_mask(RTNLGRP_IPV4_ROUTE)
RTMGRP_IPV4_RULE = group_mask(RTNLGRP_IPV4_RULE)
RTMGRP_IPV6_IFADDR = group_mask(RTNLGRP_IPV6_IFADDR)
RTMGRP_IPV6_ROUTE = group_mask(RTNLGRP_IPV6_ROUTE)
RTMGRP_IPV6_RULE = group_mask(RTNLGRP_IPV6_RULE)

#: The groups each observer joins.
LINK_GROUPS = RTMGRP_LINK
ADDRESS_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
ROUTE_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
RULE_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE

# ---- values ----------------------------------------------------------------------------

AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6 = 0, 2, 7, 10
#: IFA_CACHEINFO lifetime meaning "forever".
INFINITY_LIFE_TIME = 0xFFFFFFFF
#: rtmsg.rtm_table for a table above 255 (RTA_TABLE / FRA_TABLE has the real one).
RT_TABLE_COMPAT = 252
#: The main table.
RT_TABLE_MAIN = 254
