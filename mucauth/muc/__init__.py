"""The XEP-0045 service. Nothing in here knows HTTP: joins go through an IJoinAuthorizer."""

from mucauth.muc.service import MUCService

__all__ = ["MUCService"]
