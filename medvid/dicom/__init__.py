"""DICOM studies: finding files, safe unzip, header rows, pixel decoding and export.

Public API (all framework-free):

- files: :func:`is_dicom`, :func:`find_dicom_files`, :func:`safe_unzip`
- header: :func:`read_header`, :func:`read_instance`, :class:`InstanceRecord`,
  :func:`instance_record`, :func:`cine_fps`, :func:`primary_ultrasound_region`
- pixels: :func:`read_frames`, :func:`read_frame`, :func:`write_png`, :func:`write_cine_mp4`
"""

from medvid.dicom.files import (
    find_dicom_files,
    is_dicom,
    is_dicomdir,
    safe_unzip,
    safe_unzip_nested,
)
from medvid.dicom.header import (
    DEFAULT_CINE_FPS,
    DicomHeader,
    InstanceRecord,
    UltrasoundRegion,
    cine_fps,
    instance_record,
    primary_ultrasound_region,
    read_header,
    read_instance,
    ultrasound_regions,
)
from medvid.dicom.pixels import (
    CineExport,
    number_of_frames,
    read_frame,
    read_frames,
    write_cine_mp4,
    write_png,
)

__all__ = [
    "DEFAULT_CINE_FPS",
    "CineExport",
    "DicomHeader",
    "InstanceRecord",
    "UltrasoundRegion",
    "cine_fps",
    "find_dicom_files",
    "instance_record",
    "is_dicom",
    "is_dicomdir",
    "number_of_frames",
    "primary_ultrasound_region",
    "read_frame",
    "read_frames",
    "read_header",
    "read_instance",
    "safe_unzip",
    "safe_unzip_nested",
    "ultrasound_regions",
    "write_cine_mp4",
    "write_png",
]
