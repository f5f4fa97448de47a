from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    CREATED: _ClassVar[EventType]
    UPDATED: _ClassVar[EventType]
    DESTROYED: _ClassVar[EventType]
    BOOTSTRAPPED: _ClassVar[EventType]
    ERRORED: _ClassVar[EventType]

class ApplyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTO: _ClassVar[ApplyMode]
    NO_REBOOT: _ClassVar[ApplyMode]
    TRY: _ClassVar[ApplyMode]
EVENT_TYPE_UNSPECIFIED: EventType
CREATED: EventType
UPDATED: EventType
DESTROYED: EventType
BOOTSTRAPPED: EventType
ERRORED: EventType
AUTO: ApplyMode
NO_REBOOT: ApplyMode
TRY: ApplyMode

class Metadata(_message.Message):
    __slots__ = ("namespace", "type", "id", "version", "owner", "phase", "created", "updated", "finalizers", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    FINALIZERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    type: str
    id: str
    version: int
    owner: str
    phase: str
    created: str
    updated: str
    finalizers: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, namespace: _Optional[str] = ..., type: _Optional[str] = ..., id: _Optional[str] = ..., version: _Optional[int] = ..., owner: _Optional[str] = ..., phase: _Optional[str] = ..., created: _Optional[str] = ..., updated: _Optional[str] = ..., finalizers: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("metadata", "spec_json")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec_json: str
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec_json: _Optional[str] = ...) -> None: ...

class PrintColumn(_message.Message):
    __slots__ = ("name", "json_path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JSON_PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    json_path: str
    def __init__(self, name: _Optional[str] = ..., json_path: _Optional[str] = ...) -> None: ...

class ResourceDefinition(_message.Message):
    __slots__ = ("type", "display_type", "default_namespace", "aliases", "print_columns", "sensitive")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PRINT_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    type: str
    display_type: str
    default_namespace: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    print_columns: _containers.RepeatedCompositeFieldContainer[PrintColumn]
    sensitive: bool
    def __init__(self, type: _Optional[str] = ..., display_type: _Optional[str] = ..., default_namespace: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., print_columns: _Optional[_Iterable[_Union[PrintColumn, _Mapping]]] = ..., sensitive: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("namespace", "type", "id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    type: str
    id: str
    def __init__(self, namespace: _Optional[str] = ..., type: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("node", "definition", "resource")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    node: str
    definition: ResourceDefinition
    resource: Resource
    def __init__(self, node: _Optional[str] = ..., definition: _Optional[_Union[ResourceDefinition, _Mapping]] = ..., resource: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("namespace", "type")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    type: str
    def __init__(self, namespace: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("node", "definition", "resources")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    node: str
    definition: ResourceDefinition
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    def __init__(self, node: _Optional[str] = ..., definition: _Optional[_Union[ResourceDefinition, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("namespace", "type", "id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    type: str
    id: str
    def __init__(self, namespace: _Optional[str] = ..., type: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("node", "definition", "event", "resource", "old")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    OLD_FIELD_NUMBER: _ClassVar[int]
    node: str
    definition: ResourceDefinition
    event: EventType
    resource: Resource
    old: Resource
    def __init__(self, node: _Optional[str] = ..., definition: _Optional[_Union[ResourceDefinition, _Mapping]] = ..., event: _Optional[_Union[EventType, str]] = ..., resource: _Optional[_Union[Resource, _Mapping]] = ..., old: _Optional[_Union[Resource, _Mapping]] = ...) -> None: ...

class ApplyConfigurationRequest(_message.Message):
    __slots__ = ("data", "mode", "try_timeout_seconds")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TRY_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    data: str
    mode: ApplyMode
    try_timeout_seconds: float
    def __init__(self, data: _Optional[str] = ..., mode: _Optional[_Union[ApplyMode, str]] = ..., try_timeout_seconds: _Optional[float] = ...) -> None: ...

class ApplyConfigurationResponse(_message.Message):
    __slots__ = ("mode", "rollback_at", "warnings")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_AT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    mode: ApplyMode
    rollback_at: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mode: _Optional[_Union[ApplyMode, str]] = ..., rollback_at: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ConfirmConfigurationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfirmConfigurationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("remaining",)
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    remaining: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, remaining: _Optional[_Iterable[str]] = ...) -> None: ...

class DependenciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DependenciesResponse(_message.Message):
    __slots__ = ("dot",)
    DOT_FIELD_NUMBER: _ClassVar[int]
    dot: str
    def __init__(self, dot: _Optional[str] = ...) -> None: ...

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("node", "version", "python")
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    node: str
    version: str
    python: str
    def __init__(self, node: _Optional[str] = ..., version: _Optional[str] = ..., python: _Optional[str] = ...) -> None: ...
