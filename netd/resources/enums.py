"""The enumerations of netd.md §3, with their kernel numbers and string forms.

Value enums derive from :class:`NetEnum` (an ``IntEnum``): ``str(x)`` is the
documented string form, ``int(x)`` the kernel number. Numbers without a name
still make a (cached) member whose string form is Go's stringer fallback,
``RoutingTable(180)``, so kernel dumps never fail and IDs render like the
reference. ``Cls.parse`` accepts a member, the number, the string form or the
fallback form; unknown names are errors.

Bitmasks derive from :class:`NetFlags` (an ``IntFlag`` keeping unknown bits):
``str(x)`` is the comma-joined list of the set named bits in bit order (``""``
for 0); ``parse`` accepts that list or a number.

In pydantic models both serialise (JSON mode) as their string form.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from netd.netip import Addr, Prefix

_FALLBACK = re.compile(r"([A-Za-z0-9]+)\((-?[0-9]+)\)")

# Enums for which parsing "" gives the 0 value (bond options, netd.md §3).
_EMPTY_IS_ZERO: set[type] = set()


class NetEnum(enum.IntEnum):
    """A kernel number with a documented string form."""

    _label_: str

    def __new__(cls, value: int, label: str | None = None) -> NetEnum:
        obj = int.__new__(cls, value)
        obj._value_ = value
        obj._label_ = label or ""
        return obj

    def __init__(self, *args: Any) -> None:
        if not self._label_:
            self._label_ = self._name_.lower()

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            obj = int.__new__(cls, value)
            obj._name_ = f"{cls.__name__}({value})"
            obj._value_ = value
            obj._label_ = obj._name_
            return cls._value2member_map_.setdefault(value, obj)
        return None

    def __str__(self) -> str:
        return self._label_

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._label_}: {int(self)}>"

    @property
    def label(self) -> str:
        """The documented string form (``inet4``, ``RoutingTable(180)``)."""
        return self._label_

    @property
    def known(self) -> bool:
        """True for a documented value (not a ``Name(n)`` fallback)."""
        return self._name_ in type(self).__members__

    @classmethod
    def from_name(cls, text: str) -> Any:
        """The member whose string form is ``text`` (also ``Name(n)``); ValueError otherwise."""
        if text == "" and cls in _EMPTY_IS_ZERO:
            return cls(0)
        for member in cls:
            if member._label_ == text:
                return member
        m = _FALLBACK.fullmatch(text)
        if m and m.group(1) == cls.__name__:
            return cls(int(m.group(2)))
        raise ValueError(f"unknown {cls.__name__} {text!r}")

    @classmethod
    def parse(cls, value: Any) -> Any:
        """A member from a member, a number or a string form."""
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            raise ValueError(f"{cls.__name__}: a boolean is not a value")
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, str):
            return cls.from_name(value)
        raise ValueError(f"{cls.__name__}: cannot parse {value!r}")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )


def empty_is_zero(cls: type[NetEnum]) -> type[NetEnum]:
    _EMPTY_IS_ZERO.add(cls)
    return cls


class NetFlags(enum.IntFlag, boundary=enum.KEEP):
    """A kernel bitmask rendered as a comma-joined list of names."""

    def _flag_label(self) -> str:
        return (self._name_ or "").lower()

    def names(self) -> list[str]:
        return list(_flag_names(type(self), self._value_))

    def __str__(self) -> str:
        return _flag_str(type(self), self._value_)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    @classmethod
    def from_names(cls, text: str) -> Any:
        by_label = {m._flag_label(): m for m in cls}
        out = cls(0)
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in by_label:
                raise ValueError(f"unknown {cls.__name__} flag {part!r}")
            out |= by_label[part]
        return out

    @classmethod
    def parse(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            raise ValueError(f"{cls.__name__}: a boolean is not a value")
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, str):
            return cls.from_names(value)
        if isinstance(value, list):
            return cls.from_names(",".join(str(v) for v in value))
        raise ValueError(f"{cls.__name__}: cannot parse {value!r}")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )


@functools.lru_cache(maxsize=4096)
def _flag_names(cls: type[NetFlags], value: int) -> tuple[str, ...]:
    """The set named bits of ``value`` in bit order, once per (class, value): serialising
    10,000 routes asked for the same few flag sets 10,000 times, each a walk of the class."""
    return tuple(m._flag_label() for m in cls if m._value_ and (value & m._value_) == m._value_)


@functools.lru_cache(maxsize=4096)
def _flag_str(cls: type[NetFlags], value: int) -> str:
    return ",".join(_flag_names(cls, value))


# ---- configuration --------------------------------------------------------------------


class ConfigLayer(NetEnum):
    """Where a network-config spec came from; higher wins in merges."""

    DEFAULT = 0
    CMDLINE = 1
    PLATFORM = 2
    OPERATOR = 3
    CONFIGURATION = 4


class Operator(NetEnum):
    DHCP4 = 0
    DHCP6 = 1
    VIP = 2


# ---- addresses and routes ---------------------------------------------------------------


class Family(NetEnum):
    INET4 = 2
    INET6 = 10

    @classmethod
    def of(cls, x: Addr | Prefix) -> Family:
        """The family of an address or prefix."""
        return cls.INET4 if x.version == 4 else cls.INET6


class Scope(NetEnum):
    GLOBAL = 0
    SITE = 200
    LINK = 253
    HOST = 254
    NOWHERE = 255


class RoutingTable(NetEnum):
    UNSPEC = 0
    DEFAULT = 253
    MAIN = 254
    LOCAL = 255


class RouteType(NetEnum):
    UNSPEC = 0
    UNICAST = 1
    LOCAL = 2
    BROADCAST = 3
    ANYCAST = 4
    MULTICAST = 5
    BLACKHOLE = 6
    UNREACHABLE = 7
    PROHIBIT = 8
    THROW = 9
    NAT = 10
    XRESOLVE = 11


class RouteProtocol(NetEnum):
    UNSPEC = 0
    REDIRECT = 1
    KERNEL = 2
    BOOT = 3
    STATIC = 4
    RA = 9
    MRT = 10
    ZEBRA = 11
    BIRD = 12
    DNROUTED = 13
    XORP = 14
    NTK = 15
    DHCP = 16
    MRTD = 17
    KEEPALIVED = 18
    BABEL = 42
    OPENR = 99
    BGP = 186
    ISIS = 187
    OSPF = 188
    RIP = 189
    EIGRP = 192


class RouteFlags(NetFlags):
    NOTIFY = 0x100
    CLONED = 0x200
    EQUALIZE = 0x400
    PREFIX = 0x800
    LOOKUP_TABLE = 0x1000
    FIB_MATCH = 0x2000
    OFFLOAD = 0x4000
    TRAP = 0x8000


#: The flags the route spec controller compares (netd.md §5.3).
ROUTE_FLAGS_COMPARE_MASK = RouteFlags.NOTIFY | RouteFlags.CLONED | RouteFlags.EQUALIZE | RouteFlags.PREFIX


class AddressFlags(NetFlags):
    TEMPORARY = 0x1
    NODAD = 0x2
    OPTIMISTIC = 0x4
    DADFAILED = 0x8
    HOMEADDRESS = 0x10
    DEPRECATED = 0x20
    TENTATIVE = 0x40
    PERMANENT = 0x80
    MNGMTMPADDR = 0x100
    NOPREFIXROUTE = 0x200
    MCAUTOJOIN = 0x400
    STABLEPRIVACY = 0x800


# ---- links --------------------------------------------------------------------------------


class LinkFlags(NetFlags):
    UP = 1 << 0
    BROADCAST = 1 << 1
    DEBUG = 1 << 2
    LOOPBACK = 1 << 3
    POINTTOPOINT = 1 << 4
    NOTRAILERS = 1 << 5
    RUNNING = 1 << 6
    NOARP = 1 << 7
    PROMISC = 1 << 8
    ALLMULTI = 1 << 9
    MASTER = 1 << 10
    SLAVE = 1 << 11
    MULTICAST = 1 << 12
    PORTSEL = 1 << 13
    AUTOMEDIA = 1 << 14
    DYNAMIC = 1 << 15
    LOWER_UP = 1 << 16
    DORMANT = 1 << 17
    ECHO = 1 << 18

    def _flag_label(self) -> str:
        return self._name_ or ""


class OperationalState(NetEnum):
    UNKNOWN = 0
    NOT_PRESENT = 1, "notPresent"
    DOWN = 2
    LOWER_LAYER_DOWN = 3, "lowerLayerDown"
    TESTING = 4
    DORMANT = 5
    UP = 6


class LinkType(NetEnum):
    """ARPHRD_* link types."""

    NETROM = 0
    ETHER = 1
    EETHER = 2
    AX25 = 3
    PRONET = 4
    CHAOS = 5
    IEEE802 = 6
    ARCNET = 7
    ATALK = 8
    DLCI = 15
    ATM = 19
    METRICOM = 23
    IEEE1394 = 24
    EUI64 = 27
    INFINIBAND = 32
    SLIP = 256
    CSLIP = 257
    SLIP6 = 258
    CSLIP6 = 259
    RSRVD = 260
    ADAPT = 264
    ROSE = 270
    X25 = 271
    HWX25 = 272
    CAN = 280
    PPP = 512
    CISCO = 513
    LAPB = 516
    DDCMP = 517
    RAWHDLC = 518
    IPIP = 768
    TUNNEL6 = 769
    FRAD = 770
    SKIP = 771
    LOOPBACK = 772
    LOCALTLK = 773
    FDDI = 774
    BIF = 775
    SIT = 776
    IP_DDP = 777, "ip/ddp"
    GRE = 778
    PIMREG = 779
    HIPPI = 780
    ASH = 781
    ECONET = 782
    IRDA = 783
    FCPP = 784
    FCAL = 785
    FCPL = 786
    FCFB_0 = 787
    FCFB_1 = 788
    FCFB_2 = 789
    FCFB_3 = 790
    FCFB_4 = 791
    FCFB_5 = 792
    FCFB_6 = 793
    FCFB_7 = 794
    FCFB_8 = 795
    FCFB_9 = 796
    FCFB_10 = 797
    FCFB_11 = 798
    FCFB_12 = 799
    TR = 800
    IEEE802_11 = 801, "ieee802.11"
    IEEE802_11_PRISM = 802, "ieee802.11_prism"
    IEEE802_11_RADIOTAP = 803, "ieee802.11_radiotap"
    IEEE802_15_4 = 804, "ieee802.15.4"
    IEEE802_15_4_MONITOR = 805, "ieee802.15.4_monitor"
    PHONET = 820
    PHONET_PIPE = 821
    CAIF = 822
    IP6GRE = 823
    NETLINK = 824
    LOWPAN6 = 825, "6lowpan"
    NOHDR = 65534
    VOID = 65535


class Port(NetEnum):
    TWISTED_PAIR = 0, "TwistedPair"
    AUI = 1, "AUI"
    MII = 2, "MII"
    FIBRE = 3, "Fibre"
    BNC = 4, "BNC"
    DIRECT_ATTACH = 5, "DirectAttach"
    NONE = 0xEF, "None"
    OTHER = 0xFF, "Other"


class Duplex(NetEnum):
    HALF = 0, "Half"
    FULL = 1, "Full"
    UNKNOWN = 255, "Unknown"


# ---- bonds and VLANs ------------------------------------------------------------------


@empty_is_zero
class BondMode(NetEnum):
    BALANCE_RR = 0, "balance-rr"
    ACTIVE_BACKUP = 1, "active-backup"
    BALANCE_XOR = 2, "balance-xor"
    BROADCAST = 3, "broadcast"
    IEEE8023AD = 4, "802.3ad"
    BALANCE_TLB = 5, "balance-tlb"
    BALANCE_ALB = 6, "balance-alb"


@empty_is_zero
class BondXmitHashPolicy(NetEnum):
    LAYER2 = 0, "layer2"
    LAYER34 = 1, "layer3+4"
    LAYER23 = 2, "layer2+3"
    ENCAP23 = 3, "encap2+3"
    ENCAP34 = 4, "encap3+4"


@empty_is_zero
class LACPRate(NetEnum):
    SLOW = 0
    FAST = 1


@empty_is_zero
class ARPValidate(NetEnum):
    NONE = 0
    ACTIVE = 1
    BACKUP = 2
    ALL = 3


@empty_is_zero
class ARPAllTargets(NetEnum):
    ANY = 0
    ALL = 1


@empty_is_zero
class PrimaryReselect(NetEnum):
    ALWAYS = 0
    BETTER = 1
    FAILURE = 2


class FailOverMAC(enum.IntEnum):
    """No string form: rendered as its integer (netd.md §2.4)."""

    NONE = 0
    ACTIVE = 1
    FOLLOW = 2

    @classmethod
    def from_name(cls, text: str) -> FailOverMAC:
        """Bond option names (``none``/``active``/``follow``, ``""`` = none) or a number."""
        if text == "":
            return cls.NONE
        if text.isdigit():
            return cls(int(text))
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown FailOverMAC {text!r}") from None


@empty_is_zero
class ADSelect(NetEnum):
    STABLE = 0
    BANDWIDTH = 1
    COUNT = 2


class VLANProtocol(NetEnum):
    IEEE8021Q = 0x8100, "802.1q"
    IEEE8021AD = 0x88A8, "802.1ad"


# ---- nftables ---------------------------------------------------------------------------


class NfTablesChainHook(NetEnum):
    PREROUTING = 0
    INPUT = 1
    FORWARD = 2
    OUTPUT = 3
    POSTROUTING = 4


class NfTablesChainPriority(NetEnum):
    FIRST = -(2**31)
    CONNTRACK_DEFRAG = -400, "conntrack-defrag"
    RAW = -300
    SELINUX_FIRST = -225, "selinux-first"
    CONNTRACK = -200
    MANGLE = -150
    NAT_DEST = -100, "nat-dest"
    FILTER = 0
    SECURITY = 50
    NAT_SOURCE = 100, "nat-source"
    SELINUX_LAST = 225, "selinux-last"
    CONNTRACK_HELPER = 300, "conntrack-helper"
    LAST = 2**31 - 1


class NfTablesVerdict(NetEnum):
    DROP = 0
    ACCEPT = 1


class MatchOperator(NetEnum):
    EQUAL = 0, "=="
    NOT_EQUAL = 1, "!="


class ConntrackState(NetEnum):
    """Conntrack state bits; NfTables rules hold them as a list."""

    NEW = 0x08
    RELATED = 0x04
    ESTABLISHED = 0x02
    INVALID = 0x01


class Protocol(NetEnum):
    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58


class DefaultAction(NetEnum):
    ACCEPT = 0
    BLOCK = 1


ALL_ENUMS: tuple[type[NetEnum], ...] = (
    ConfigLayer,
    Operator,
    Family,
    Scope,
    RoutingTable,
    RouteType,
    RouteProtocol,
    OperationalState,
    LinkType,
    Port,
    Duplex,
    BondMode,
    BondXmitHashPolicy,
    LACPRate,
    ARPValidate,
    ARPAllTargets,
    PrimaryReselect,
    ADSelect,
    VLANProtocol,
    NfTablesChainHook,
    NfTablesChainPriority,
    NfTablesVerdict,
    MatchOperator,
    ConntrackState,
    Protocol,
    DefaultAction,
)
ALL_FLAGS: tuple[type[NetFlags], ...] = (RouteFlags, AddressFlags, LinkFlags)


class RoutingRuleAction(NetEnum):
    """FRA_ACTION of a policy routing rule (``FR_ACT_*`` in linux/fib_rules.h); a rule
    that looks up a table has action ``unicast`` (FR_ACT_TO_TBL), as ``ip rule`` shows it."""

    UNSPEC = 0
    UNICAST = 1
    GOTO = 2
    NOP = 3
    BLACKHOLE = 6
    UNREACHABLE = 7
    PROHIBIT = 8
