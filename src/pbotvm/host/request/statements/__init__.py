"""From bare statements to a whole program: what the C family (``cfamily``) and Java
(``java``) share: the analysis copy, the function extractor, their own options and the
program's parts."""
