//! CAR v1 import and export (filled in by the CAR work).
