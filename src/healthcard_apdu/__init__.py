"""healthcard-apdu: personalize, read and verify China's Resident Health Card (居民健康卡)."""

__version__ = "0.1.0"
