"""The REST API, version 1: routers by resource, mounted under ``/api/v1``."""

from fastapi import APIRouter

from . import admin, catalog, claims

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
router.include_router(catalog.router)
router.include_router(claims.router)
router.include_router(admin.router)
