"""Removing and fusing duplicate detections (greedy suppression, box voting, weighted box fusion), sharing
one galaxy's box sides, and a score cut.

Shape shorthand: B images, N detection slots. The ops take and return padded detections, a
dict of `boxes` float32 [B, N, 4] (yxyx pixels), `scores` float32 [B, N], `classes` int32
[B, N] and `num_detections` int32 [B]: the first `num_detections` slots of an image are real,
in descending score order, and every slot after them is zero. Static shapes throughout, so
they run inside the postprocess layer, `tf.data` and a serving graph.
"""

from __future__ import annotations

import tensorflow as tf

from gsfc_tf import conventions
from gsfc_tf.ops.boxes import box_containment, box_iou, clip_boxes

__all__ = ["keep_scores_at_least", "share_box_sides", "suppress_duplicates", "vote_boxes", "weighted_box_fusion"]

# Votes and side means weigh a box by score ** 8: only the near-best boxes count (see `vote_boxes`).
NEAR_BEST_SCORE_POWER = 8.0


def _check_detections(detections) -> None:
    missing = {"boxes", "scores", "classes", "num_detections"} - set(detections)
    if missing:
        raise ValueError(f"Detections need boxes, scores, classes and num_detections; missing {sorted(missing)}.")
    boxes, scores = detections["boxes"], detections["scores"]
    if boxes.shape.rank != 3 or boxes.shape[-1] != 4 or scores.shape.rank != 2:
        raise ValueError(f"Expected boxes [B, N, 4] and scores [B, N], got {boxes.shape} and {scores.shape}.")


def _check_threshold(name: str, value: float | None) -> None:
    if value is not None and not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] or None, got {value}.")


def _valid_slots(scores, num_detections) -> tf.Tensor:
    """bool [B, N]: the real slots."""
    return tf.range(tf.shape(scores)[1])[tf.newaxis] < num_detections[:, tf.newaxis]


def _gather_padded(detections, indices, count):
    """Detections at `indices` [B, N] (the first `count` [B] real), padding rows zeroed."""
    valid = _valid_slots(indices, count)
    return {
        "boxes": tf.where(valid[..., tf.newaxis], tf.gather(detections["boxes"], indices, batch_dims=1), 0.0),
        "scores": tf.where(valid, tf.gather(detections["scores"], indices, batch_dims=1), 0.0),
        "classes": tf.where(valid, tf.gather(tf.cast(detections["classes"], tf.int32), indices, batch_dims=1), 0),
        "num_detections": tf.cast(count, tf.int32),
    }


def keep_scores_at_least(detections, score_threshold) -> dict[str, tf.Tensor]:
    """Keeps the detections scoring at least `score_threshold` (as catalogues keep `min_score`).

    Args:
        detections: padded detections (module docstring), N slots.
        score_threshold: float32 scalar.

    Returns:
        The same layout and N slots: the kept detections lead each image (scores descend), so
        `num_detections` shrinks and the slots after them become zero.
    """
    _check_detections(detections)
    scores = tf.cast(detections["scores"], tf.float32)
    kept = tf.logical_and(_valid_slots(scores, detections["num_detections"]), scores >= score_threshold)
    slots = tf.broadcast_to(tf.range(tf.shape(scores)[1])[tf.newaxis], tf.shape(scores))
    return _gather_padded(detections, slots, tf.reduce_sum(tf.cast(kept, tf.int32), axis=1))


def suppress_duplicates(
    detections,
    *,
    iou_threshold: float | None = None,
    containment_threshold: float | None = None,
    same_class_only: bool = False,
) -> dict[str, tf.Tensor]:
    """Greedy suppression: a detection is dropped when it duplicates a higher-scoring kept one.

    A duplicate has IoU above `iou_threshold` (strictly, as in NMS) or intersection over the
    smaller box's area of at least `containment_threshold` with a kept detection: the second
    criterion catches a small box nested inside a large one, whose IoU stays small. With both
    None nothing is dropped. `same_class_only=True` compares only detections of one class,
    which is per-class NMS; False is class-agnostic.

    Args:
        detections: padded detections (module docstring), N slots.
        iou_threshold: in (0, 1], or None to skip the IoU criterion.
        containment_threshold: in (0, 1], or None to skip the containment criterion.
        same_class_only: suppress only within a class.

    Returns:
        The kept detections in the same padded layout and N slots, in descending score order.

    Raises:
        ValueError: malformed detections, or a threshold outside (0, 1].
    """
    _check_detections(detections)
    _check_threshold("iou_threshold", iou_threshold)
    _check_threshold("containment_threshold", containment_threshold)
    boxes_yxyx = tf.cast(detections["boxes"], tf.float32)
    scores = tf.cast(detections["scores"], tf.float32)
    num_slots = tf.shape(scores)[1]
    duplicate = tf.zeros(tf.stack([tf.shape(scores)[0], num_slots, num_slots]), tf.bool)
    if iou_threshold is not None:
        duplicate |= box_iou(boxes_yxyx, boxes_yxyx) > iou_threshold
    if containment_threshold is not None:
        duplicate |= box_containment(boxes_yxyx, boxes_yxyx) >= containment_threshold
    if same_class_only:
        classes = tf.cast(detections["classes"], tf.int32)
        duplicate &= tf.equal(classes[:, :, tf.newaxis], classes[:, tf.newaxis, :])
    # Padding scores -inf: the strict score_threshold below leaves them out.
    ranked = tf.where(_valid_slots(scores, detections["num_detections"]), scores, float("-inf"))

    def keep(args):
        # A 0/1 overlap matrix against 0.5 applies both criteria exactly (no threshold arithmetic).
        duplicate_of, image_scores = args
        kept = tf.image.non_max_suppression_overlaps(
            tf.cast(duplicate_of, tf.float32), image_scores, num_slots, overlap_threshold=0.5, score_threshold=float("-inf")
        )
        count = tf.size(kept)
        return tf.pad(kept, [[0, num_slots - count]]), count

    indices, count = tf.map_fn(
        keep, (duplicate, ranked), fn_output_signature=(tf.TensorSpec([scores.shape[1]], tf.int32), tf.TensorSpec([], tf.int32))
    )
    return _gather_padded(detections, indices, count)


def vote_boxes(
    detections, candidate_boxes_yxyx, candidate_scores, *, iou_threshold: float, score_power: float = NEAR_BEST_SCORE_POWER
) -> dict[str, tf.Tensor]:
    """Box voting (Gidaris & Komodakis 2015, arXiv:1505.01749): each kept box becomes the mean of
    the candidate boxes that overlap it, weighted by score ** `score_power`.

    Suppression keeps the best-scoring box of a clump and drops its neighbours, yet the score
    ranks whether a clump is there, not how well a box fits it; averaging the neighbours (both
    classes: they are one clump) tightens the sides. Weighting by score ** 8 rather than the score
    lets only the near-best boxes vote: on 1,000 validation galaxies, powers 1, 2, 4, 8, 16 gave
    the seed-0 `smoke` model completeness 0.707, 0.710, 0.709, 0.711, 0.711 (0.704 without voting)
    and the `cpu` model 0.792, 0.796, 0.797, 0.796, 0.795 (0.784); weak models' low-scoring
    neighbours are poor boxes (RESULTS.md). Scores, classes and order are unchanged.

    Args:
        detections: padded detections (module docstring), N slots, each also among the candidates.
        candidate_boxes_yxyx: float32 [B, C, 4], the boxes before suppression.
        candidate_scores: float32 [B, C] in [0, 1], 0 for candidates that must not vote.
        iou_threshold: a candidate votes for each kept box it overlaps with IoU at least this.
        score_power: a vote weighs the candidate's score to this power.

    Returns:
        The detections with voted boxes.

    Raises:
        ValueError: malformed detections or `iou_threshold` outside (0, 1].
    """
    _check_detections(detections)
    _check_threshold("iou_threshold", iou_threshold)
    boxes_yxyx = tf.cast(detections["boxes"], tf.float32)
    weights = tf.cast(candidate_scores, tf.float32)[:, tf.newaxis] ** score_power
    votes = tf.where(box_iou(boxes_yxyx, candidate_boxes_yxyx) >= iou_threshold, weights, 0.0)
    total = tf.reduce_sum(votes, axis=-1, keepdims=True)
    voted = tf.math.divide_no_nan(tf.einsum("bnc,bcj->bnj", votes, candidate_boxes_yxyx), total)
    real = _valid_slots(boxes_yxyx[..., 0], detections["num_detections"])[..., tf.newaxis]
    return {**detections, "boxes": tf.where(real & (total > 0.0), voted, boxes_yxyx)}


def share_box_sides(
    detections, *, fraction: float, image_size: int, score_power: float = NEAR_BEST_SCORE_POWER
) -> dict[str, tf.Tensor]:
    """Moves each box's log side (log of the square root of its area) `fraction` of the way to its
    image's mean log side, weighted by score ** `score_power`; centres and aspect ratios stay, and
    the boxes are clipped to the image.

    Volunteers size the boxes of one galaxy alike: in the real Clump Scout labels every galaxy
    with several boxes has one box side (14,781 of 14,781 galaxies), and so does the synthetic
    generator. A clump's own light fixes its side only loosely, so the galaxy's other confident
    boxes are more evidence. The fraction is `DetectorConfig.side_sharing`'s, chosen on validation
    (RESULTS.md).

    Args:
        detections: padded detections (module docstring).
        fraction: 0 keeps every box, 1 gives an image's boxes one side.
        image_size: the side of the square image the boxes are in, pixels.
        score_power: a box weighs its score to this power in its image's mean.

    Returns:
        The detections with rescaled boxes; scores, classes and order unchanged.

    Raises:
        ValueError: malformed detections or `fraction` outside [0, 1].
    """
    _check_detections(detections)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}.")
    boxes_yxyx = tf.cast(detections["boxes"], tf.float32)
    real = _valid_slots(boxes_yxyx[..., 0], detections["num_detections"])
    centres = (boxes_yxyx[..., :2] + boxes_yxyx[..., 2:]) / 2.0
    sizes = tf.maximum(boxes_yxyx[..., 2:] - boxes_yxyx[..., :2], 1e-3)
    log_sides = 0.5 * tf.reduce_sum(tf.math.log(sizes), axis=-1)
    weights = tf.where(real, tf.cast(detections["scores"], tf.float32) ** score_power, 0.0)
    total = tf.reduce_sum(weights, axis=-1, keepdims=True)
    mean = tf.math.divide_no_nan(tf.reduce_sum(weights * log_sides, axis=-1, keepdims=True), total)
    half_sizes = sizes / 2.0 * tf.exp(fraction * (mean - log_sides))[..., tf.newaxis]
    shared = clip_boxes(tf.concat([centres - half_sizes, centres + half_sizes], axis=-1), image_size)
    return {**detections, "boxes": tf.where((real & (total > 0.0))[..., tf.newaxis], shared, boxes_yxyx)}


def weighted_box_fusion(detections, *, iou_threshold: float = 0.55, num_sources: int) -> dict[str, tf.Tensor]:
    """Weighted box fusion (Solovyev et al. 2021, arXiv:1910.13302) of detections pooled from several sources.

    In descending score order, each detection joins the cluster whose fused box it overlaps
    most, if that IoU exceeds `iou_threshold`, else starts a cluster. A cluster's fused box is
    its members' score-weighted mean box. Its score is the paper's rescaled mean,
    mean score x min(n, T) / T for n members from T sources, i.e. sum of scores / max(n, T):
    a clump found by every source keeps its mean score, one found by few is down-weighted.
    Clustering ignores classes (a clump seen as `clump` in six sources and `odd_clump` in two is
    one clump, as the class-agnostic stage of the postprocess assumes); the fused class is that
    of the cluster's highest-scoring member.

    Args:
        detections: padded detections (module docstring) pooled from all sources, N slots;
            the real ones first, in descending score order.
        iou_threshold: the IoU a detection must exceed to join a cluster (the paper's 0.55).
        num_sources: T, e.g. 8 dihedral views of one image.

    Returns:
        Fused detections, N slots (at most N clusters), in descending fused score order.

    Raises:
        ValueError: malformed detections, `iou_threshold` outside (0, 1] or `num_sources` < 1.
    """
    _check_detections(detections)
    _check_threshold("iou_threshold", iou_threshold)
    if num_sources < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources}.")
    boxes_yxyx = tf.cast(detections["boxes"], tf.float32)
    scores = tf.cast(detections["scores"], tf.float32)
    classes = tf.cast(detections["classes"], tf.int32)
    num_detections = tf.cast(detections["num_detections"], tf.int32)
    batch, num_slots = tf.shape(scores)[0], tf.shape(scores)[1]

    def add_detection(i, *clusters):
        real = i < num_detections
        detection = (boxes_yxyx[:, i], scores[:, i], classes[:, i : i + 1], real)
        return (i + 1, *_join_cluster(detection, *clusters, iou_threshold=iou_threshold))

    zeros = tf.zeros([batch, num_slots])
    # Padding slots come last: the loop stops after the longest image's real detections.
    longest = tf.reduce_max(num_detections)
    _, weighted_boxes, score_sums, member_counts, cluster_classes, num_clusters = tf.while_loop(
        lambda i, *_: i < longest,
        add_detection,
        (0, tf.zeros([batch, num_slots, 4]), zeros, zeros, tf.zeros([batch, num_slots], tf.int32), tf.zeros([batch], tf.int32)),
    )
    fused = {
        "boxes": tf.math.divide_no_nan(weighted_boxes, score_sums[..., tf.newaxis]),
        "scores": score_sums / tf.maximum(member_counts, float(num_sources)),
        "classes": cluster_classes,
    }
    ranked = tf.where(_valid_slots(scores, num_clusters), fused["scores"], float("-inf"))
    order = tf.argsort(ranked, axis=1, direction="DESCENDING", stable=True)
    return _gather_padded(fused, order, num_clusters)


def _join_cluster(detection, weighted_boxes, score_sums, member_counts, cluster_classes, num_clusters, *, iou_threshold):
    """One step of `weighted_box_fusion`: every image's next detection joins or starts a cluster.

    Args:
        detection: `(box [B, 4], score [B], class [B, 1], real [B])` of slot i of each image;
            a detection that is not `real` (padding) changes nothing.
        weighted_boxes, score_sums, member_counts: float32 [B, N, 4], [B, N], [B, N]: each
            cluster's sum of score x box, of scores and its member count.
        cluster_classes: int32 [B, N], the class of each cluster's first (best) member.
        num_clusters: int32 [B].
        iou_threshold: the IoU with a fused box a detection must exceed to join its cluster.

    Returns:
        The updated `(weighted_boxes, score_sums, member_counts, cluster_classes, num_clusters)`.
    """
    box, score, detection_class, real = detection
    num_slots = tf.shape(score_sums)[1]
    fused = tf.math.divide_no_nan(weighted_boxes, score_sums[..., tf.newaxis])
    iou = box_iou(box[:, tf.newaxis], fused)[:, 0]
    # Slots with no cluster yet are padding, which never matches.
    iou = tf.where(tf.range(num_slots)[tf.newaxis] < num_clusters[:, tf.newaxis], iou, conventions.PADDED_IOU)
    matched = tf.reduce_max(iou, axis=1) > iou_threshold
    target = tf.where(matched, tf.argmax(iou, axis=1, output_type=tf.int32), num_clusters)
    member = tf.one_hot(target, num_slots) * tf.cast(real, tf.float32)[:, tf.newaxis]
    started = tf.logical_and(member > 0.0, tf.logical_not(matched)[:, tf.newaxis])
    return (
        weighted_boxes + member[..., tf.newaxis] * (score[:, tf.newaxis] * box)[:, tf.newaxis],
        score_sums + member * score[:, tf.newaxis],
        member_counts + member,
        tf.where(started, detection_class, cluster_classes),
        num_clusters + tf.cast(tf.logical_and(real, tf.logical_not(matched)), tf.int32),
    )
