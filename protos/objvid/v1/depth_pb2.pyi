from objvid.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LiftRequest(_message.Message):
    __slots__ = ("images", "width", "height", "keep_aspect", "omit_image")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    KEEP_ASPECT_FIELD_NUMBER: _ClassVar[int]
    OMIT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_types_pb2.Image]
    width: int
    height: int
    keep_aspect: bool
    omit_image: bool
    def __init__(self, images: _Optional[_Iterable[_Union[_types_pb2.Image, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., keep_aspect: _Optional[bool] = ..., omit_image: _Optional[bool] = ...) -> None: ...

class LiftedView(_message.Message):
    __slots__ = ("depth", "mask", "intrinsics", "width", "height", "image")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    INTRINSICS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    depth: _types_pb2.Tensor
    mask: _types_pb2.Tensor
    intrinsics: _containers.RepeatedScalarFieldContainer[float]
    width: int
    height: int
    image: _types_pb2.Image
    def __init__(self, depth: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ..., mask: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ..., intrinsics: _Optional[_Iterable[float]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., image: _Optional[_Union[_types_pb2.Image, _Mapping]] = ...) -> None: ...

class LiftResponse(_message.Message):
    __slots__ = ("views", "model")
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    views: _containers.RepeatedCompositeFieldContainer[LiftedView]
    model: str
    def __init__(self, views: _Optional[_Iterable[_Union[LiftedView, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class LiftViewsRequest(_message.Message):
    __slots__ = ("images", "width", "height", "omit_image", "confidence_percentile", "include_confidence")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    OMIT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_types_pb2.Image]
    width: int
    height: int
    omit_image: bool
    confidence_percentile: float
    include_confidence: bool
    def __init__(self, images: _Optional[_Iterable[_Union[_types_pb2.Image, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., omit_image: _Optional[bool] = ..., confidence_percentile: _Optional[float] = ..., include_confidence: _Optional[bool] = ...) -> None: ...

class PosedView(_message.Message):
    __slots__ = ("view", "world_to_camera", "confidence")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    WORLD_TO_CAMERA_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    view: LiftedView
    world_to_camera: _containers.RepeatedScalarFieldContainer[float]
    confidence: _types_pb2.Tensor
    def __init__(self, view: _Optional[_Union[LiftedView, _Mapping]] = ..., world_to_camera: _Optional[_Iterable[float]] = ..., confidence: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ...) -> None: ...

class LiftViewsResponse(_message.Message):
    __slots__ = ("views", "model")
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    views: _containers.RepeatedCompositeFieldContainer[PosedView]
    model: str
    def __init__(self, views: _Optional[_Iterable[_Union[PosedView, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...
