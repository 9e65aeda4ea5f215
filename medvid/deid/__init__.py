"""De-identification: DICOM headers, burned-in pixel text, and the residual check.

- header: :class:`PseudonymMap`, :func:`deidentify_dataset`, :func:`study_key`,
  :func:`patient_key`, :func:`patient_key_for_id`, :func:`mark_pixels_cleaned`,
  :func:`residual_header_phi`
- phi: :class:`PhiValues`, :func:`phi_hits`, :class:`IdentifierMatcher`
- sheets: :func:`pseudonymize_patients` (patients sheets: pseudonyms, allow-listed attributes)
- names: :func:`display_name`, :func:`known_identifiers` (file names without PHI)
- pixels: :func:`redact_pixels`, :func:`text_decision` (the allow-list policy),
  :func:`detect_field_of_view`, :func:`residual_phi`, :func:`replace_pixels`,
  :class:`RedactionBox`
- video_text: :func:`scan_video_text` -> :class:`VideoTextScan` (:class:`VideoRedactionPlan`,
  :class:`TextTrack`), :class:`TextScanSettings`
- residual: :func:`residual_check` (check written frames, mask what cannot be told from PHI,
  check again), :func:`residual_check_frames`, :func:`residual_text_findings`,
  :func:`default_residual_engines`, :func:`residual_hit`

The pseudonym map, :class:`PhiValues` and OCR text are PHI: they stay in the protected zone.
"""

from medvid.deid.header import (
    PatientPseudonym,
    PseudonymMap,
    cine_video_id,
    deidentify_dataset,
    instance_key,
    mark_pixels_cleaned,
    patient_key,
    patient_key_for_id,
    residual_header_phi,
    study_key,
)
from medvid.deid.names import display_name, known_identifiers
from medvid.deid.phi import (
    IdentifierMatcher,
    PhiValues,
    header_phi_hits,
    pattern_phi_hits,
    phi_hits,
)
from medvid.deid.pixels import (
    RedactionBox,
    detect_field_of_view,
    redact_pixels,
    replace_pixels,
    residual_phi,
    text_decision,
)
from medvid.deid.residual import (
    ResidualCheck,
    default_residual_engines,
    residual_check,
    residual_check_frames,
    residual_hit,
    residual_text_findings,
)
from medvid.deid.sheets import PatientsSheetReport, pseudonymize_patients
from medvid.deid.video_text import (
    TextScanSettings,
    TextTrack,
    VideoRedactionPlan,
    VideoTextScan,
    scan_video_text,
)

__all__ = [
    "IdentifierMatcher",
    "PatientPseudonym",
    "PatientsSheetReport",
    "PhiValues",
    "PseudonymMap",
    "RedactionBox",
    "TextScanSettings",
    "TextTrack",
    "VideoRedactionPlan",
    "VideoTextScan",
    "cine_video_id",
    "default_residual_engines",
    "deidentify_dataset",
    "detect_field_of_view",
    "display_name",
    "header_phi_hits",
    "instance_key",
    "known_identifiers",
    "mark_pixels_cleaned",
    "pattern_phi_hits",
    "patient_key",
    "patient_key_for_id",
    "phi_hits",
    "pseudonymize_patients",
    "redact_pixels",
    "replace_pixels",
    "ResidualCheck",
    "residual_check",
    "residual_header_phi",
    "residual_check_frames",
    "residual_hit",
    "residual_phi",
    "residual_text_findings",
    "scan_video_text",
    "study_key",
    "text_decision",
]
