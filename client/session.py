"""A cache scene that survives eviction: :class:`SceneSession` keeps the scene's recipe (the view, the
objects at their latest transforms, the buffer updates) and rebuilds the scene when the cache answers
``NOT_FOUND`` (evicted or restarted), then retries the call once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from objvid.client.errors import ServiceError
from objvid.client.frames import RenderedFrame
from objvid.v1 import cache_pb2, diffusion_pb2, types_pb2

log = logging.getLogger("objvid.client")


def new_scene_id() -> str:
    """A client-chosen scene id: ``run-`` + 16 random hex digits (the cache's id rules)."""
    return "run-" + secrets.token_hex(8)


@dataclass
class _ObjectRecipe:
    data: bytes
    filename: str
    name: str
    transform: types_pb2.Transform | None = None  # the latest known object-to-world transform
    object_id: int = -1


@dataclass
class SceneSession:
    """A cache scene plus its recipe; calls that fail with NOT_FOUND rebuild the scene and retry once.

    The rebuild replays CreateScene, every object at its latest transform (so placement is not re-run)
    and every UpdateScene in order. ``object_ids`` maps the caller's object index to the server's id.
    """

    client: object  # an ObjvidClient
    view: cache_pb2.RgbdView | cache_pb2.RgbdViews  # one view, or N posed views (multi-view)
    filter_points_threshold: float = 0.0
    scene_id: str = ""
    objects: list[_ObjectRecipe] = field(default_factory=list)
    updates: list[tuple[cache_pb2.RgbdView, bool]] = field(default_factory=list)
    info: cache_pb2.SceneInfo | None = None
    rebuilds: int = 0

    #: Video scenes: the posed RGB-D frames (CreateVideoScene instead of CreateScene) and object tracks.
    video_frames: list[cache_pb2.RgbdView] | None = None
    object_tracks: list[cache_pb2.ObjectTrack] = field(default_factory=list)

    def create(self) -> cache_pb2.SceneInfo:
        """CreateScene under a client-chosen id (``scene_id``, generated when empty), so the scene can be
        deleted even when the answer never arrived (an interrupt, a lost connection)."""
        if not self.scene_id:
            self.scene_id = new_scene_id()
        if self.video_frames is not None:
            self.info = self.client.create_video_scene(
                self.video_frames, self.filter_points_threshold, self.scene_id
            )
            self.scene_id = self.info.scene_id
            return self.info
        self.info = self.client.create_scene(self.view, self.filter_points_threshold, self.scene_id)
        self.scene_id = self.info.scene_id
        return self.info

    def _rebuild(self) -> None:
        log.warning("event=scene_rebuild scene=%s objects=%d updates=%d", self.scene_id, len(self.objects),
                    len(self.updates))  # fmt: skip
        self.rebuilds += 1
        self.create()
        for obj in self.objects:
            info = self.client.add_object(
                self.scene_id, obj.data, obj.filename, name=obj.name, transform=obj.transform
            )
            obj.object_id = info.object_id
        for view, skip in self.updates:
            self.client.update_scene(self.scene_id, view, skip)

    def _with_rebuild(self, fn: Callable):
        try:
            return fn()
        except ServiceError as err:
            if err.code != "NOT_FOUND" or err.service != "cache":
                raise
        self._rebuild()
        return fn()

    @property
    def object_ids(self) -> list[int]:
        return [o.object_id for o in self.objects]

    def add_object(self, data: bytes, filename: str, name: str = "",
                   transform: types_pb2.Transform | None = None) -> cache_pb2.ObjectInfo:  # fmt: skip
        recipe = _ObjectRecipe(data, filename, name, transform)
        info = self._with_rebuild(lambda: self.client.add_object(self.scene_id, data, filename, name=name,
                                                                 transform=transform))  # fmt: skip
        recipe.object_id = info.object_id
        recipe.transform = types_pb2.Transform(matrix=info.transform)
        self.objects.append(recipe)
        return info

    def _record(self, index: int, info: cache_pb2.ObjectInfo) -> cache_pb2.ObjectInfo:
        self.objects[index].transform = types_pb2.Transform(matrix=info.transform)
        return info

    def place_object(self, index: int, anchor=None, height=None, scale=None) -> cache_pb2.ObjectInfo:
        info = self._with_rebuild(lambda: self.client.place_object(self.scene_id, self.objects[index].object_id,
                                                                   anchor, height, scale))  # fmt: skip
        return self._record(index, info)

    def update_object(self, index: int, transform: types_pb2.Transform) -> cache_pb2.ObjectInfo:
        info = self._with_rebuild(lambda: self.client.update_object(self.scene_id, self.objects[index].object_id,
                                                                    transform))  # fmt: skip
        return self._record(index, info)

    def update_scene(
        self, view: cache_pb2.RgbdView, skip_alignment: bool = False
    ) -> cache_pb2.UpdateSceneResponse:
        resp = self._with_rebuild(lambda: self.client.update_scene(self.scene_id, view, skip_alignment))
        self.updates.append((view, skip_alignment))
        self.info = resp.scene
        return resp

    def render_trajectory(
        self, Ks, w2cs, width, height, options, start_frame: int = 0
    ) -> Iterator[RenderedFrame]:
        """Like ObjvidClient.render_trajectory; on NOT_FOUND rebuilds and resumes at the next frame."""
        done = 0
        rebuilt = False
        while True:
            try:
                video = {"start_frame": start_frame + done, "object_tracks": self.object_tracks} if (
                    self.video_frames is not None) else {}  # fmt: skip
                for frame in self.client.render_trajectory(self.scene_id, Ks[done:], w2cs[done:], width, height,
                                                           options, **video):  # fmt: skip
                    frame.index = done
                    done += 1
                    yield frame
                return
            except ServiceError as err:
                if err.code != "NOT_FOUND" or rebuilt:
                    raise
                rebuilt = True
                self._rebuild()

    def render_source(
        self, Ks, w2cs, width, height, options, start_frame: int = 0
    ) -> diffusion_pb2.RenderSource:
        """What :meth:`render_trajectory` renders, by reference, for the diffusion model to fetch itself
        (RENDER_SOURCE): the scene id, the cameras, the options and, for video scenes, the source frames
        and object tracks."""
        source = self.client.render_source(self.scene_id, Ks, w2cs, width, height, options)
        if self.video_frames is not None:
            source.start_frame = start_frame
            source.object_tracks.extend(self.object_tracks or [])
        return source

    def render(self, K, w2c, width, height, options) -> RenderedFrame:
        """One camera (see ObjvidClient.render); rebuilds the scene on NOT_FOUND."""
        return self._with_rebuild(lambda: self.client.render(self.scene_id, K, w2c, width, height, options))

    def export_object(self, index: int) -> bytes:
        """PLY of object ``index``'s points in its own frame (rebuilds the scene on NOT_FOUND)."""
        return self._with_rebuild(
            lambda: self.client.export_scene(self.scene_id, object_id=self.objects[index].object_id)
        )

    def delete(self, timeout: float | None = None) -> None:
        """DeleteScene (NOT_FOUND counts as deleted); ``timeout``: seconds (None = the SDK's deadline)."""
        if not self.scene_id:
            return
        try:
            self.client.delete_scene(self.scene_id, timeout=timeout)
        except ServiceError as err:
            if err.code != "NOT_FOUND":
                raise
