from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dtype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[Dtype]
    DTYPE_UINT8: _ClassVar[Dtype]
    DTYPE_INT8: _ClassVar[Dtype]
    DTYPE_UINT16: _ClassVar[Dtype]
    DTYPE_INT16: _ClassVar[Dtype]
    DTYPE_INT32: _ClassVar[Dtype]
    DTYPE_INT64: _ClassVar[Dtype]
    DTYPE_FLOAT16: _ClassVar[Dtype]
    DTYPE_FLOAT32: _ClassVar[Dtype]
    DTYPE_FLOAT64: _ClassVar[Dtype]
    DTYPE_BOOL: _ClassVar[Dtype]

class TrajectoryPreset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAJECTORY_PRESET_UNSPECIFIED: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_LEFT: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_RIGHT: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_UP: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_DOWN: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_ZOOM_IN: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_ZOOM_OUT: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_CLOCKWISE: _ClassVar[TrajectoryPreset]
    TRAJECTORY_PRESET_COUNTERCLOCKWISE: _ClassVar[TrajectoryPreset]

class CameraRotation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMERA_ROTATION_UNSPECIFIED: _ClassVar[CameraRotation]
    CAMERA_ROTATION_CENTER_FACING: _ClassVar[CameraRotation]
    CAMERA_ROTATION_NO_ROTATION: _ClassVar[CameraRotation]
    CAMERA_ROTATION_TRAJECTORY_ALIGNED: _ClassVar[CameraRotation]
DTYPE_UNSPECIFIED: Dtype
DTYPE_UINT8: Dtype
DTYPE_INT8: Dtype
DTYPE_UINT16: Dtype
DTYPE_INT16: Dtype
DTYPE_INT32: Dtype
DTYPE_INT64: Dtype
DTYPE_FLOAT16: Dtype
DTYPE_FLOAT32: Dtype
DTYPE_FLOAT64: Dtype
DTYPE_BOOL: Dtype
TRAJECTORY_PRESET_UNSPECIFIED: TrajectoryPreset
TRAJECTORY_PRESET_LEFT: TrajectoryPreset
TRAJECTORY_PRESET_RIGHT: TrajectoryPreset
TRAJECTORY_PRESET_UP: TrajectoryPreset
TRAJECTORY_PRESET_DOWN: TrajectoryPreset
TRAJECTORY_PRESET_ZOOM_IN: TrajectoryPreset
TRAJECTORY_PRESET_ZOOM_OUT: TrajectoryPreset
TRAJECTORY_PRESET_CLOCKWISE: TrajectoryPreset
TRAJECTORY_PRESET_COUNTERCLOCKWISE: TrajectoryPreset
CAMERA_ROTATION_UNSPECIFIED: CameraRotation
CAMERA_ROTATION_CENTER_FACING: CameraRotation
CAMERA_ROTATION_NO_ROTATION: CameraRotation
CAMERA_ROTATION_TRAJECTORY_ALIGNED: CameraRotation

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: Dtype
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[Dtype, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "pixels")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    pixels: Tensor
    def __init__(self, encoded: _Optional[bytes] = ..., pixels: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Camera(_message.Message):
    __slots__ = ("intrinsics", "world_to_camera", "width", "height")
    INTRINSICS_FIELD_NUMBER: _ClassVar[int]
    WORLD_TO_CAMERA_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    intrinsics: _containers.RepeatedScalarFieldContainer[float]
    world_to_camera: _containers.RepeatedScalarFieldContainer[float]
    width: int
    height: int
    def __init__(self, intrinsics: _Optional[_Iterable[float]] = ..., world_to_camera: _Optional[_Iterable[float]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class PointCloud(_message.Message):
    __slots__ = ("positions", "colors", "normals")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    COLORS_FIELD_NUMBER: _ClassVar[int]
    NORMALS_FIELD_NUMBER: _ClassVar[int]
    positions: Tensor
    colors: Tensor
    normals: Tensor
    def __init__(self, positions: _Optional[_Union[Tensor, _Mapping]] = ..., colors: _Optional[_Union[Tensor, _Mapping]] = ..., normals: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Matrix4(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Pose(_message.Message):
    __slots__ = ("translation", "rotation_deg", "scale")
    TRANSLATION_FIELD_NUMBER: _ClassVar[int]
    ROTATION_DEG_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    translation: _containers.RepeatedScalarFieldContainer[float]
    rotation_deg: _containers.RepeatedScalarFieldContainer[float]
    scale: float
    def __init__(self, translation: _Optional[_Iterable[float]] = ..., rotation_deg: _Optional[_Iterable[float]] = ..., scale: _Optional[float] = ...) -> None: ...

class Transform(_message.Message):
    __slots__ = ("matrix", "pose")
    MATRIX_FIELD_NUMBER: _ClassVar[int]
    POSE_FIELD_NUMBER: _ClassVar[int]
    matrix: Matrix4
    pose: Pose
    def __init__(self, matrix: _Optional[_Union[Matrix4, _Mapping]] = ..., pose: _Optional[_Union[Pose, _Mapping]] = ...) -> None: ...

class TrajectorySpec(_message.Message):
    __slots__ = ("preset", "rotation", "movement_distance", "frame_count", "center_depth")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    MOVEMENT_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    CENTER_DEPTH_FIELD_NUMBER: _ClassVar[int]
    preset: TrajectoryPreset
    rotation: CameraRotation
    movement_distance: float
    frame_count: int
    center_depth: float
    def __init__(self, preset: _Optional[_Union[TrajectoryPreset, str]] = ..., rotation: _Optional[_Union[CameraRotation, str]] = ..., movement_distance: _Optional[float] = ..., frame_count: _Optional[int] = ..., center_depth: _Optional[float] = ...) -> None: ...
