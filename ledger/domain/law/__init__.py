"""The rules of law a decision applies, as data with their legal references.

``rules`` defines the kinds of rule; one module per jurisdiction lists its rules; ``registry``
finds the rules in force for a region, a channel and a moment. See ``../shared/LAW.md``.
"""
