from objvid.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenderMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RENDER_MODE_UNSPECIFIED: _ClassVar[RenderMode]
    RENDER_MODE_FUSED: _ClassVar[RenderMode]
    RENDER_MODE_FULL: _ClassVar[RenderMode]
    RENDER_MODE_SCENE: _ClassVar[RenderMode]
    RENDER_MODE_OBJECTS: _ClassVar[RenderMode]

class SplatKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPLAT_KIND_UNSPECIFIED: _ClassVar[SplatKind]
    SPLAT_KIND_GEN3C: _ClassVar[SplatKind]
    SPLAT_KIND_ZBUFFER: _ClassVar[SplatKind]

class RenderOutput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RENDER_OUTPUT_UNSPECIFIED: _ClassVar[RenderOutput]
    RENDER_OUTPUT_RGB: _ClassVar[RenderOutput]
    RENDER_OUTPUT_MASK: _ClassVar[RenderOutput]
    RENDER_OUTPUT_DEPTH: _ClassVar[RenderOutput]
    RENDER_OUTPUT_OBJECT_MASK: _ClassVar[RenderOutput]

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ENCODING_UNSPECIFIED: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_RAW: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_PNG: _ClassVar[ImageEncoding]
RENDER_MODE_UNSPECIFIED: RenderMode
RENDER_MODE_FUSED: RenderMode
RENDER_MODE_FULL: RenderMode
RENDER_MODE_SCENE: RenderMode
RENDER_MODE_OBJECTS: RenderMode
SPLAT_KIND_UNSPECIFIED: SplatKind
SPLAT_KIND_GEN3C: SplatKind
SPLAT_KIND_ZBUFFER: SplatKind
RENDER_OUTPUT_UNSPECIFIED: RenderOutput
RENDER_OUTPUT_RGB: RenderOutput
RENDER_OUTPUT_MASK: RenderOutput
RENDER_OUTPUT_DEPTH: RenderOutput
RENDER_OUTPUT_OBJECT_MASK: RenderOutput
IMAGE_ENCODING_UNSPECIFIED: ImageEncoding
IMAGE_ENCODING_RAW: ImageEncoding
IMAGE_ENCODING_PNG: ImageEncoding

class RgbdView(_message.Message):
    __slots__ = ("image", "depth", "mask", "camera")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    image: _types_pb2.Image
    depth: _types_pb2.Tensor
    mask: _types_pb2.Tensor
    camera: _types_pb2.Camera
    def __init__(self, image: _Optional[_Union[_types_pb2.Image, _Mapping]] = ..., depth: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ..., mask: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ..., camera: _Optional[_Union[_types_pb2.Camera, _Mapping]] = ...) -> None: ...

class CreateVideoSceneRequest(_message.Message):
    __slots__ = ("scene_id", "filter_points_threshold", "num_frames", "frames", "float32_depth")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_POINTS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_DEPTH_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    filter_points_threshold: float
    num_frames: int
    frames: _containers.RepeatedCompositeFieldContainer[RgbdView]
    float32_depth: bool
    def __init__(self, scene_id: _Optional[str] = ..., filter_points_threshold: _Optional[float] = ..., num_frames: _Optional[int] = ..., frames: _Optional[_Iterable[_Union[RgbdView, _Mapping]]] = ..., float32_depth: _Optional[bool] = ...) -> None: ...

class CreateVideoSceneResponse(_message.Message):
    __slots__ = ("scene",)
    SCENE_FIELD_NUMBER: _ClassVar[int]
    scene: SceneInfo
    def __init__(self, scene: _Optional[_Union[SceneInfo, _Mapping]] = ...) -> None: ...

class ObjectTrack(_message.Message):
    __slots__ = ("object_id", "poses")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    POSES_FIELD_NUMBER: _ClassVar[int]
    object_id: int
    poses: _containers.RepeatedCompositeFieldContainer[_types_pb2.Transform]
    def __init__(self, object_id: _Optional[int] = ..., poses: _Optional[_Iterable[_Union[_types_pb2.Transform, _Mapping]]] = ...) -> None: ...

class RgbdViews(_message.Message):
    __slots__ = ("views", "seed_view", "frame_buffer_max", "full_threshold")
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    SEED_VIEW_FIELD_NUMBER: _ClassVar[int]
    FRAME_BUFFER_MAX_FIELD_NUMBER: _ClassVar[int]
    FULL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    views: _containers.RepeatedCompositeFieldContainer[RgbdView]
    seed_view: int
    frame_buffer_max: int
    full_threshold: float
    def __init__(self, views: _Optional[_Iterable[_Union[RgbdView, _Mapping]]] = ..., seed_view: _Optional[int] = ..., frame_buffer_max: _Optional[int] = ..., full_threshold: _Optional[float] = ...) -> None: ...

class CreateSceneRequest(_message.Message):
    __slots__ = ("rgbd", "points", "views", "filter_points_threshold", "scene_id", "idempotency_key")
    RGBD_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    FILTER_POINTS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    rgbd: RgbdView
    points: _types_pb2.PointCloud
    views: RgbdViews
    filter_points_threshold: float
    scene_id: str
    idempotency_key: str
    def __init__(self, rgbd: _Optional[_Union[RgbdView, _Mapping]] = ..., points: _Optional[_Union[_types_pb2.PointCloud, _Mapping]] = ..., views: _Optional[_Union[RgbdViews, _Mapping]] = ..., filter_points_threshold: _Optional[float] = ..., scene_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ObjectInfo(_message.Message):
    __slots__ = ("object_id", "name", "num_points", "transform")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_POINTS_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    object_id: int
    name: str
    num_points: int
    transform: _types_pb2.Matrix4
    def __init__(self, object_id: _Optional[int] = ..., name: _Optional[str] = ..., num_points: _Optional[int] = ..., transform: _Optional[_Union[_types_pb2.Matrix4, _Mapping]] = ...) -> None: ...

class SceneInfo(_message.Message):
    __slots__ = ("scene_id", "num_points", "num_buffer_slots", "objects", "device_bytes", "device", "seed_camera", "depth_clamped_fraction", "depth_warning", "num_video_frames", "num_source_views", "seed_view")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_POINTS_FIELD_NUMBER: _ClassVar[int]
    NUM_BUFFER_SLOTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SEED_CAMERA_FIELD_NUMBER: _ClassVar[int]
    DEPTH_CLAMPED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_WARNING_FIELD_NUMBER: _ClassVar[int]
    NUM_VIDEO_FRAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_SOURCE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    SEED_VIEW_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    num_points: int
    num_buffer_slots: int
    objects: _containers.RepeatedCompositeFieldContainer[ObjectInfo]
    device_bytes: int
    device: str
    seed_camera: _types_pb2.Camera
    depth_clamped_fraction: float
    depth_warning: str
    num_video_frames: int
    num_source_views: int
    seed_view: int
    def __init__(self, scene_id: _Optional[str] = ..., num_points: _Optional[int] = ..., num_buffer_slots: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[ObjectInfo, _Mapping]]] = ..., device_bytes: _Optional[int] = ..., device: _Optional[str] = ..., seed_camera: _Optional[_Union[_types_pb2.Camera, _Mapping]] = ..., depth_clamped_fraction: _Optional[float] = ..., depth_warning: _Optional[str] = ..., num_video_frames: _Optional[int] = ..., num_source_views: _Optional[int] = ..., seed_view: _Optional[int] = ...) -> None: ...

class CreateSceneResponse(_message.Message):
    __slots__ = ("scene",)
    SCENE_FIELD_NUMBER: _ClassVar[int]
    scene: SceneInfo
    def __init__(self, scene: _Optional[_Union[SceneInfo, _Mapping]] = ...) -> None: ...

class ObjectFile(_message.Message):
    __slots__ = ("data", "filename", "sample_points")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_POINTS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    filename: str
    sample_points: int
    def __init__(self, data: _Optional[bytes] = ..., filename: _Optional[str] = ..., sample_points: _Optional[int] = ...) -> None: ...

class AddObjectRequest(_message.Message):
    __slots__ = ("scene_id", "cloud", "file", "transform", "name", "idempotency_key")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    CLOUD_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    cloud: _types_pb2.PointCloud
    file: ObjectFile
    transform: _types_pb2.Transform
    name: str
    idempotency_key: str
    def __init__(self, scene_id: _Optional[str] = ..., cloud: _Optional[_Union[_types_pb2.PointCloud, _Mapping]] = ..., file: _Optional[_Union[ObjectFile, _Mapping]] = ..., transform: _Optional[_Union[_types_pb2.Transform, _Mapping]] = ..., name: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AddObjectResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ...) -> None: ...

class PlaceObjectRequest(_message.Message):
    __slots__ = ("scene_id", "object_id", "anchor_u", "anchor_v", "height", "scale")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_U_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_V_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    object_id: int
    anchor_u: float
    anchor_v: float
    height: float
    scale: float
    def __init__(self, scene_id: _Optional[str] = ..., object_id: _Optional[int] = ..., anchor_u: _Optional[float] = ..., anchor_v: _Optional[float] = ..., height: _Optional[float] = ..., scale: _Optional[float] = ...) -> None: ...

class PlaceObjectResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ...) -> None: ...

class UpdateObjectRequest(_message.Message):
    __slots__ = ("scene_id", "object_id", "transform")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    object_id: int
    transform: _types_pb2.Transform
    def __init__(self, scene_id: _Optional[str] = ..., object_id: _Optional[int] = ..., transform: _Optional[_Union[_types_pb2.Transform, _Mapping]] = ...) -> None: ...

class UpdateObjectResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: ObjectInfo
    def __init__(self, object: _Optional[_Union[ObjectInfo, _Mapping]] = ...) -> None: ...

class RemoveObjectRequest(_message.Message):
    __slots__ = ("scene_id", "object_id")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    object_id: int
    def __init__(self, scene_id: _Optional[str] = ..., object_id: _Optional[int] = ...) -> None: ...

class RemoveObjectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenderOptions(_message.Message):
    __slots__ = ("mode", "splat", "outputs", "encoding", "footprint", "object_radius_px", "foreground_masking", "pack_masks", "depth_fp16", "object_mask_slots", "all_sources")
    MODE_FIELD_NUMBER: _ClassVar[int]
    SPLAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    FOOTPRINT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_RADIUS_PX_FIELD_NUMBER: _ClassVar[int]
    FOREGROUND_MASKING_FIELD_NUMBER: _ClassVar[int]
    PACK_MASKS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FP16_FIELD_NUMBER: _ClassVar[int]
    OBJECT_MASK_SLOTS_FIELD_NUMBER: _ClassVar[int]
    ALL_SOURCES_FIELD_NUMBER: _ClassVar[int]
    mode: RenderMode
    splat: SplatKind
    outputs: _containers.RepeatedScalarFieldContainer[RenderOutput]
    encoding: ImageEncoding
    footprint: int
    object_radius_px: float
    foreground_masking: bool
    pack_masks: bool
    depth_fp16: bool
    object_mask_slots: int
    all_sources: bool
    def __init__(self, mode: _Optional[_Union[RenderMode, str]] = ..., splat: _Optional[_Union[SplatKind, str]] = ..., outputs: _Optional[_Iterable[_Union[RenderOutput, str]]] = ..., encoding: _Optional[_Union[ImageEncoding, str]] = ..., footprint: _Optional[int] = ..., object_radius_px: _Optional[float] = ..., foreground_masking: _Optional[bool] = ..., pack_masks: _Optional[bool] = ..., depth_fp16: _Optional[bool] = ..., object_mask_slots: _Optional[int] = ..., all_sources: _Optional[bool] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("index", "num_slots", "rgb", "mask", "depth", "object_mask", "mask_bits", "mask_width", "slot_sources")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NUM_SLOTS_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OBJECT_MASK_FIELD_NUMBER: _ClassVar[int]
    MASK_BITS_FIELD_NUMBER: _ClassVar[int]
    MASK_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SLOT_SOURCES_FIELD_NUMBER: _ClassVar[int]
    index: int
    num_slots: int
    rgb: _containers.RepeatedCompositeFieldContainer[_types_pb2.Image]
    mask: _containers.RepeatedCompositeFieldContainer[_types_pb2.Image]
    depth: _types_pb2.Tensor
    object_mask: _types_pb2.Tensor
    mask_bits: _types_pb2.Tensor
    mask_width: int
    slot_sources: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, index: _Optional[int] = ..., num_slots: _Optional[int] = ..., rgb: _Optional[_Iterable[_Union[_types_pb2.Image, _Mapping]]] = ..., mask: _Optional[_Iterable[_Union[_types_pb2.Image, _Mapping]]] = ..., depth: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ..., object_mask: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ..., mask_bits: _Optional[_Union[_types_pb2.Tensor, _Mapping]] = ..., mask_width: _Optional[int] = ..., slot_sources: _Optional[_Iterable[int]] = ...) -> None: ...

class SharedMemoryRegion(_message.Message):
    __slots__ = ("name", "size", "key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    key: bytes
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., key: _Optional[bytes] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("scene_id", "camera", "options", "shm")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    camera: _types_pb2.Camera
    options: RenderOptions
    shm: SharedMemoryRegion
    def __init__(self, scene_id: _Optional[str] = ..., camera: _Optional[_Union[_types_pb2.Camera, _Mapping]] = ..., options: _Optional[_Union[RenderOptions, _Mapping]] = ..., shm: _Optional[_Union[SharedMemoryRegion, _Mapping]] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("frame", "shm_bytes")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SHM_BYTES_FIELD_NUMBER: _ClassVar[int]
    frame: Frame
    shm_bytes: int
    def __init__(self, frame: _Optional[_Union[Frame, _Mapping]] = ..., shm_bytes: _Optional[int] = ...) -> None: ...

class RenderTrajectoryRequest(_message.Message):
    __slots__ = ("scene_id", "cameras", "trajectory", "options", "start_frame", "object_tracks")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    START_FRAME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TRACKS_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    cameras: _containers.RepeatedCompositeFieldContainer[_types_pb2.Camera]
    trajectory: _types_pb2.TrajectorySpec
    options: RenderOptions
    start_frame: int
    object_tracks: _containers.RepeatedCompositeFieldContainer[ObjectTrack]
    def __init__(self, scene_id: _Optional[str] = ..., cameras: _Optional[_Iterable[_Union[_types_pb2.Camera, _Mapping]]] = ..., trajectory: _Optional[_Union[_types_pb2.TrajectorySpec, _Mapping]] = ..., options: _Optional[_Union[RenderOptions, _Mapping]] = ..., start_frame: _Optional[int] = ..., object_tracks: _Optional[_Iterable[_Union[ObjectTrack, _Mapping]]] = ...) -> None: ...

class RenderTrajectoryResponse(_message.Message):
    __slots__ = ("frame", "total_frames")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FRAMES_FIELD_NUMBER: _ClassVar[int]
    frame: Frame
    total_frames: int
    def __init__(self, frame: _Optional[_Union[Frame, _Mapping]] = ..., total_frames: _Optional[int] = ...) -> None: ...

class UpdateSceneRequest(_message.Message):
    __slots__ = ("scene_id", "view", "skip_alignment", "idempotency_key")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    SKIP_ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    view: RgbdView
    skip_alignment: bool
    idempotency_key: str
    def __init__(self, scene_id: _Optional[str] = ..., view: _Optional[_Union[RgbdView, _Mapping]] = ..., skip_alignment: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AlignmentReport(_message.Message):
    __slots__ = ("scale", "shift", "error_before", "error_after", "pixels_used")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    ERROR_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_AFTER_FIELD_NUMBER: _ClassVar[int]
    PIXELS_USED_FIELD_NUMBER: _ClassVar[int]
    scale: float
    shift: float
    error_before: float
    error_after: float
    pixels_used: int
    def __init__(self, scale: _Optional[float] = ..., shift: _Optional[float] = ..., error_before: _Optional[float] = ..., error_after: _Optional[float] = ..., pixels_used: _Optional[int] = ...) -> None: ...

class UpdateSceneResponse(_message.Message):
    __slots__ = ("scene", "alignment")
    SCENE_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    scene: SceneInfo
    alignment: AlignmentReport
    def __init__(self, scene: _Optional[_Union[SceneInfo, _Mapping]] = ..., alignment: _Optional[_Union[AlignmentReport, _Mapping]] = ...) -> None: ...

class GetSceneRequest(_message.Message):
    __slots__ = ("scene_id",)
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    def __init__(self, scene_id: _Optional[str] = ...) -> None: ...

class GetSceneResponse(_message.Message):
    __slots__ = ("scene",)
    SCENE_FIELD_NUMBER: _ClassVar[int]
    scene: SceneInfo
    def __init__(self, scene: _Optional[_Union[SceneInfo, _Mapping]] = ...) -> None: ...

class ListScenesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListScenesResponse(_message.Message):
    __slots__ = ("scenes",)
    SCENES_FIELD_NUMBER: _ClassVar[int]
    scenes: _containers.RepeatedCompositeFieldContainer[SceneInfo]
    def __init__(self, scenes: _Optional[_Iterable[_Union[SceneInfo, _Mapping]]] = ...) -> None: ...

class DeleteSceneRequest(_message.Message):
    __slots__ = ("scene_id",)
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    def __init__(self, scene_id: _Optional[str] = ...) -> None: ...

class DeleteSceneResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportSceneRequest(_message.Message):
    __slots__ = ("scene_id", "exclude_objects", "object_id")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    scene_id: str
    exclude_objects: bool
    object_id: int
    def __init__(self, scene_id: _Optional[str] = ..., exclude_objects: _Optional[bool] = ..., object_id: _Optional[int] = ...) -> None: ...

class ExportSceneResponse(_message.Message):
    __slots__ = ("ply", "num_points")
    PLY_FIELD_NUMBER: _ClassVar[int]
    NUM_POINTS_FIELD_NUMBER: _ClassVar[int]
    ply: bytes
    num_points: int
    def __init__(self, ply: _Optional[bytes] = ..., num_points: _Optional[int] = ...) -> None: ...
