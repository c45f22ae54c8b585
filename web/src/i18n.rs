//! English and French. Every text a page shows is a [`Msg`]; the `messages!` table gives each
//! its two translations, so a message without French does not compile. The language comes
//! from `?lang=` (remembered in a cookie), then the cookie, then `Accept-Language`; English
//! by default. Problem details from the API are shown as the API wrote them (English).

use axum::http::HeaderMap;
use axum::http::header;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

/// The cookie the chosen language is kept in.
pub const LANG_COOKIE: &str = "vmcloud_lang";

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().get(..2)? {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// The language of a request: the cookie, then `Accept-Language` (in its order).
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(lang) =
            crate::client::cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v))
        {
            return lang;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .find_map(|part| Lang::parse(part.split(';').next()?))
            })
            .unwrap_or(Lang::En)
    }

    pub fn t(self, msg: Msg) -> &'static str {
        let (en, fr) = msg.en_fr();
        match self {
            Lang::En => en,
            Lang::Fr => fr,
        }
    }
}

macro_rules! messages {
    ($($name:ident => $en:literal, $fr:literal;)*) => {
        /// A text of the pages.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Msg { $($name),* }

        impl Msg {
            pub const ALL: &'static [Msg] = &[$(Msg::$name),*];

            pub fn en_fr(self) -> (&'static str, &'static str) {
                match self { $(Msg::$name => ($en, $fr)),* }
            }

            /// Its name, as a `?notice=` carries it.
            pub fn name(self) -> &'static str {
                match self { $(Msg::$name => stringify!($name)),* }
            }

            pub fn from_name(name: &str) -> Option<Msg> {
                Msg::ALL.iter().copied().find(|m| m.name() == name)
            }
        }
    };
}

messages! {
    Brand => "VMCloud", "VMCloud";
    SignUp => "Sign up", "Créer un compte";
    LogIn => "Log in", "Se connecter";
    LogOut => "Log out", "Se déconnecter";
    Email => "Email", "Adresse e-mail";
    Password => "Password", "Mot de passe";
    PasswordHint => "At least 10 characters; a few unrelated words make a strong one.", "Au moins 10 caractères ; quelques mots sans rapport font un mot de passe solide.";
    OrgName => "Organisation name", "Nom de l'organisation";
    OrgKind => "Kind", "Type";
    KindPerson => "Person", "Particulier";
    KindCompany => "Company", "Entreprise";
    Country => "Billing country (ISO code: FR, DE, NL…)", "Pays de facturation (code ISO : FR, DE, NL…)";
    VatId => "EU VAT id (companies)", "Numéro de TVA intracommunautaire (entreprises)";
    CreateAccount => "Create my account", "Créer mon compte";
    HaveAccount => "Already have an account?", "Déjà un compte ?";
    NoAccount => "No account yet?", "Pas encore de compte ?";
    CheckMail => "Check your mail", "Consultez vos e-mails";
    CheckMailText => "We sent a link to confirm your email address. Open it within 24 hours, then log in.", "Nous avons envoyé un lien pour confirmer votre adresse. Ouvrez-le sous 24 heures, puis connectez-vous.";
    Verified => "Email confirmed: you can log in.", "Adresse confirmée : vous pouvez vous connecter.";
    VerifyFailed => "This link does not work", "Ce lien ne fonctionne pas";
    TotpCode => "Authenticator code (if two-step verification is on)", "Code de l'application d'authentification (si la validation en deux étapes est active)";
    TotpNeeded => "Enter the 6-digit code of your authenticator app (or a recovery code).", "Saisissez le code à 6 chiffres de votre application d'authentification (ou un code de secours).";
    Console => "Console", "Console";
    Projects => "Projects", "Projets";
    Project => "Project", "Projet";
    Organisation => "Organisation", "Organisation";
    Organisations => "Organisations", "Organisations";
    Role => "Role", "Rôle";
    Name => "Name", "Nom";
    Create => "Create", "Créer";
    NewProject => "New project", "Nouveau projet";
    Instances => "Instances", "Instances";
    NewInstance => "New instance", "Nouvelle instance";
    Flavor => "Flavor", "Gabarit";
    Image => "Image", "Image";
    Region => "Region", "Région";
    State => "State", "État";
    Host => "Host", "Hôte";
    Created => "Created", "Créée";
    NoInstances => "No instances yet.", "Aucune instance pour l'instant.";
    Delete => "Delete", "Supprimer";
    DeleteInstance => "Delete this instance?", "Supprimer cette instance ?";
    DeleteWarning => "The VM is stopped and its disk is erased. This cannot be undone.", "La VM est arrêtée et son disque effacé. C'est irréversible.";
    Cancel => "Cancel", "Annuler";
    ApiKeys => "API keys", "Clés d'API";
    NewKey => "New API key", "Nouvelle clé d'API";
    KeyShownOnce => "Copy this key now: it is shown only once.", "Copiez cette clé maintenant : elle ne sera plus affichée.";
    Revoke => "Revoke", "Révoquer";
    Revoked => "revoked", "révoquée";
    Active => "active", "active";
    Expires => "Expires", "Expire";
    Never => "never", "jamais";
    ExpiresInDays => "Expires in (days, empty: never)", "Expire dans (jours, vide : jamais)";
    Account => "Account", "Compte";
    ChangePassword => "Change password", "Changer le mot de passe";
    CurrentPassword => "Current password", "Mot de passe actuel";
    NewPassword => "New password", "Nouveau mot de passe";
    TwoStep => "Two-step verification", "Validation en deux étapes";
    TwoStepOn => "On: logging in asks for a code from your authenticator app.", "Active : la connexion demande un code de votre application d'authentification.";
    TwoStepOff => "Off: anyone with your password can log in.", "Inactive : toute personne ayant votre mot de passe peut se connecter.";
    TurnOn => "Turn on", "Activer";
    TurnOff => "Turn off", "Désactiver";
    ScanQr => "Scan this QR code with your authenticator app, or type the secret, then enter the code it shows.", "Scannez ce QR code avec votre application d'authentification, ou saisissez le secret, puis entrez le code affiché.";
    Secret => "Secret", "Secret";
    Code => "Code", "Code";
    Confirm => "Confirm", "Confirmer";
    RecoveryCodes => "Recovery codes", "Codes de secours";
    RecoveryCodesText => "Each works once instead of a code. Keep them somewhere safe: they are shown only now.", "Chacun remplace un code une seule fois. Gardez-les en lieu sûr : ils ne sont affichés que maintenant.";
    Sessions => "Sessions", "Sessions";
    LogOutEverywhere => "Log out everywhere", "Se déconnecter partout";
    LogOutEverywhereText => "Ends every session of your account: browsers and the CLI.", "Met fin à toutes les sessions de votre compte : navigateurs et CLI.";
    Members => "Members", "Membres";
    Invite => "Invite", "Inviter";
    InviteText => "Add a person by email: they get a mail (with a sign-up link if they have no account yet).", "Ajoutez une personne par e-mail : elle reçoit un message (avec un lien d'inscription si elle n'a pas encore de compte).";
    RequireMfa => "Require two-step verification for every member", "Exiger la validation en deux étapes pour tous les membres";
    Save => "Save", "Enregistrer";
    Settings => "Settings", "Paramètres";
    Trial => "Trial: no GPU flavors and at most 2 instances until a payment method is added.", "Essai : pas de gabarit GPU et au plus 2 instances tant qu'aucun moyen de paiement n'est ajouté.";
    Live => "Updated live", "Mis à jour en direct";
    Back => "Back", "Retour";
    Error => "Something went wrong", "Un problème est survenu";
    NotFound => "Not found", "Introuvable";
    BadForm => "This form expired: reload the page and try again.", "Ce formulaire a expiré : rechargez la page et réessayez.";
    NoticeProjectCreated => "Project created.", "Projet créé.";
    NoticeInstanceCreated => "Instance created: it starts in a few seconds.", "Instance créée : elle démarre dans quelques secondes.";
    NoticeInstanceDeleted => "Instance deleted.", "Instance supprimée.";
    NoticeKeyRevoked => "Key revoked.", "Clé révoquée.";
    NoticePasswordChanged => "Password changed: log in again.", "Mot de passe changé : reconnectez-vous.";
    NoticeTotpOff => "Two-step verification is off.", "La validation en deux étapes est désactivée.";
    NoticeMemberAdded => "Member added.", "Membre ajouté.";
    NoticeSaved => "Saved.", "Enregistré.";
    NoticeLoggedOut => "You are logged out.", "Vous êtes déconnecté.";
    Quotas => "Quotas", "Quotas";
    QuotasText => "What this project may hold in each region (used / limit). Every instance, job member and game session counts.", "Ce que ce projet peut détenir dans chaque région (utilisé / limite). Chaque instance, membre de tâche et session de jeu compte.";
    MemoryGib => "Memory (GiB)", "Mémoire (Gio)";
    Reservations => "Reservations", "Réservations";
    AskForMore => "Ask for more", "Demander davantage";
    Reason => "What for", "Pour quoi faire";
    Send => "Send", "Envoyer";
    QuotaRequests => "Requests", "Demandes";
    Wanted => "Asked", "Demandé";
    Note => "Answer", "Réponse";
    NoticeQuotaAsked => "Request sent: the operators are told.", "Demande envoyée : les opérateurs sont prévenus.";
    AuditTrail => "Audit trail", "Journal d'audit";
    AuditText => "Every change in this organisation and every refused attempt, newest first; each entry is chained to the one before (vmcloud audit verify).", "Chaque changement dans cette organisation et chaque tentative refusée, du plus récent au plus ancien ; chaque entrée est chaînée à la précédente (vmcloud audit verify).";
    Actor => "Who", "Qui";
    Resource => "What", "Quoi";
    Source => "From", "Depuis";
    Action => "Action", "Action";
    Outcome => "Outcome", "Résultat";
    Time => "Time", "Heure";
    Filter => "Filter", "Filtrer";
    Older => "Older", "Plus anciens";
    ForgotPassword => "Forgot your password?", "Mot de passe oublié ?";
    ForgotText => "Enter your email: if an account exists for it, we send a link to choose a new password (it works for an hour).", "Saisissez votre adresse : si un compte existe, nous envoyons un lien pour choisir un nouveau mot de passe (valable une heure).";
    SendLink => "Send the link", "Envoyer le lien";
    ResetSent => "If an account exists for that address, the link is on its way.", "Si un compte existe pour cette adresse, le lien est en route.";
    ChooseNewPassword => "Choose a new password", "Choisissez un nouveau mot de passe";
    NoticePasswordReset => "Password changed: log in with the new one.", "Mot de passe changé : connectez-vous avec le nouveau.";
    LogInWithSso => "Log in with SSO", "Se connecter avec le SSO";
    SsoText => "Your organisation's own log-in (OpenID Connect): enter your work email.", "La connexion de votre organisation (OpenID Connect) : saisissez votre adresse professionnelle.";
    ContinueToProvider => "Continue to your organisation's log-in", "Continuer vers la connexion de votre organisation";
    SsoSettings => "Log-in with SSO (OpenID Connect)", "Connexion SSO (OpenID Connect)";
    SsoSettingsText => "Register this redirect URI at your provider, then give its issuer and client:", "Déclarez cette URI de redirection chez votre fournisseur, puis indiquez son émetteur et son client :";
    Issuer => "Issuer URL", "URL de l'émetteur";
    ClientId => "Client id", "Identifiant client";
    ClientSecret => "Client secret", "Secret client";
    AllowedDomains => "Allowed email domains (comma-separated)", "Domaines e-mail autorisés (séparés par des virgules)";
    DefaultRole => "Role of new members", "Rôle des nouveaux membres";
    SsoOff => "Turn SSO off", "Désactiver le SSO";
    Invitation => "Invitation", "Invitation";
    InvitationLogIn => "To join, log in (or sign up) with the address the invitation was sent to, then open the link in the mail again.", "Pour rejoindre l'organisation, connectez-vous (ou créez un compte) avec l'adresse à laquelle l'invitation a été envoyée, puis rouvrez le lien du mail.";
    NoticeJoined => "You joined the organisation.", "Vous avez rejoint l'organisation.";
    NoticeInvited => "Invitation sent: they join once they sign up and open the mailed link.", "Invitation envoyée : la personne rejoindra l'organisation après avoir créé son compte et ouvert le lien reçu.";
    ThisSession => "this browser", "ce navigateur";
    End => "End", "Terminer";
    WithCode => "with a code", "avec un code";
    NoticeSessionEnded => "Session ended.", "Session terminée.";
    DeleteProject => "Delete this project?", "Supprimer ce projet ?";
    DeleteProjectWarning => "Its API keys stop working at once. A project that still has instances cannot be deleted: delete them first.", "Ses clés d'API cessent aussitôt de fonctionner. Un projet qui a encore des instances ne peut pas être supprimé : supprimez-les d'abord.";
    NoticeProjectDeleted => "Project deleted.", "Projet supprimé.";
    Webhooks => "Webhooks", "Webhooks";
    WebhooksText => "Endpoints of yours that VMCloud POSTs events to, signed as Standard Webhooks say (verify with the endpoint's secret). Failed deliveries are tried again for about a day and a half.", "Vos points de terminaison auxquels VMCloud envoie (POST) les événements, signés selon Standard Webhooks (vérifiez-les avec le secret du point de terminaison). Les livraisons échouées sont réessayées pendant environ un jour et demi.";
    NewEndpoint => "New endpoint", "Nouveau point de terminaison";
    EventTypes => "Events", "Événements";
    AllEvents => "all", "tous";
    Event => "Event", "Événement";
    NoneTickedAll => "none ticked: all", "aucun coché : tous";
    Description => "Description", "Description";
    SecretShownOnce => "Copy this signing secret now: it is shown only once.", "Copiez ce secret de signature maintenant : il ne sera plus affiché.";
    NoEndpoints => "No endpoints yet.", "Aucun point de terminaison pour l'instant.";
    Deliveries => "Deliveries", "Livraisons";
    SendTest => "Send a test event", "Envoyer un événement de test";
    Resend => "Resend", "Renvoyer";
    Attempt => "Attempt", "Tentative";
    Queued => "queued", "en file";
    Delivered => "delivered", "livré";
    Failed => "failed", "échec";
    Disabled => "disabled", "désactivé";
    FailingSince => "failing since", "en échec depuis";
    NoDeliveries => "No deliveries yet.", "Aucune livraison pour l'instant.";
    TestResult => "Test event", "Événement de test";
    NoticeEndpointDeleted => "Endpoint deleted.", "Point de terminaison supprimé.";
    NoticeResent => "Event queued again: it shows here within seconds.", "Événement remis en file : il apparaît ici dans quelques secondes.";
    RateLimit => "Rate limit", "Limite de débit";
    RateLimitKeys => "Each key of this project may make this many API requests an hour, in bursts up to the same number, refilled evenly; every answer carries RateLimit and RateLimit-Policy headers, and past it the API answers 429 with Retry-After.", "Chaque clé de ce projet peut faire ce nombre de requêtes d'API par heure, par rafales jusqu'au même nombre, rechargées régulièrement ; chaque réponse porte les en-têtes RateLimit et RateLimit-Policy, et au-delà l'API répond 429 avec Retry-After.";
    PerHour => "requests an hour", "requêtes par heure";
    Unlimited => "not limited", "non limité";
    SetByOrganisation => "set for your organisation by VMCloud (ask support to change it)", "fixée pour votre organisation par VMCloud (demandez au support pour la changer)";
    DefaultLimit => "the default", "la valeur par défaut";
    Networks => "Networks", "Réseaux";
    NetworksText => "Private networks of this project: each instance has an address on one, kept for its life (the default network of its region when it names none). Another project's networks never reach yours, even on the same addresses.", "Réseaux privés de ce projet : chaque instance a une adresse sur l'un d'eux, gardée toute sa vie (le réseau par défaut de sa région si elle n'en nomme pas). Les réseaux d'un autre projet n'atteignent jamais les vôtres, même sur les mêmes adresses.";
    NewNetwork => "New network", "Nouveau réseau";
    Subnet => "Subnet", "Sous-réseau";
    SubnetHint => "private, /16 to /28 (empty: the first free 10.x.0.0/24)", "privé, /16 à /28 (vide : le premier 10.x.0.0/24 libre)";
    AllRegions => "all regions", "toutes les régions";
    Addresses => "Addresses", "Adresses";
    DefaultNetwork => "default", "par défaut";
    NoNetworks => "No networks yet: the first instance makes its region's default one.", "Aucun réseau : la première instance crée celui par défaut de sa région.";
    FloatingIps => "Floating IPs", "IP flottantes";
    FloatingIpsText => "Public addresses this project keeps, to move between its instances of one region.", "Adresses publiques que ce projet garde, à déplacer entre ses instances d'une même région.";
    TakeFloatingIp => "Take a floating IP", "Prendre une IP flottante";
    Assign => "Assign", "Attribuer";
    Unassign => "Unassign", "Retirer";
    Release => "Give back", "Rendre";
    ReverseDns => "Reverse DNS", "DNS inverse";
    Address => "Address", "Adresse";
    Instance => "Instance", "Instance";
    NoFloatingIps => "No floating IPs.", "Aucune IP flottante.";
    PrivateIp => "Private IP", "IP privée";
    Firewalls => "Firewalls", "Pare-feu";
    Firewall => "Firewall", "Pare-feu";
    FirewallsText => "Allow rules for the instances a firewall is attached to: inbound traffic is refused but for what the rules allow; outbound is free unless there are outbound rules. Answers to allowed traffic pass. One rule a line: in|out PROTOCOL [PORTS] [CIDR,…|fw-…] — e.g. in tcp 22 203.0.113.0/24.", "Règles d'autorisation pour les instances auxquelles un pare-feu est attaché : le trafic entrant est refusé sauf ce que les règles autorisent ; le sortant est libre sauf s'il y a des règles sortantes. Les réponses au trafic autorisé passent. Une règle par ligne : in|out PROTOCOLE [PORTS] [CIDR,…|fw-…] — p. ex. in tcp 22 203.0.113.0/24.";
    NewFirewall => "New firewall", "Nouveau pare-feu";
    Rules => "Rules", "Règles";
    NoFirewalls => "No firewalls.", "Aucun pare-feu.";
    Attached => "Attached to", "Attaché à";
    Attach => "Attach", "Attacher";
    Detach => "Detach", "Détacher";
    SaveRules => "Save the rules", "Enregistrer les règles";
    NoticeNetworkCreated => "Network created.", "Réseau créé.";
    NoticeNetworkDeleted => "Network deleted.", "Réseau supprimé.";
    NoticeFloatingIpTaken => "Floating IP taken.", "IP flottante prise.";
    NoticeFloatingIpChanged => "Floating IP changed: its hosts route it in a few seconds.", "IP flottante modifiée : ses hôtes la routent dans quelques secondes.";
    NoticeFirewallChanged => "Firewall changed: the hosts apply it in a few seconds.", "Pare-feu modifié : les hôtes l'appliquent dans quelques secondes.";
    NoticeFirewallDeleted => "Firewall deleted.", "Pare-feu supprimé.";
    Language => "Français", "English";
    Billing => "Billing", "Facturation";
    CostPerDay => "Cost per day this month", "Coût par jour ce mois-ci";
    BeforeCreditsAndVat => "before credits and VAT", "avant crédits et TVA";
    MonthToDate => "This month so far", "Ce mois-ci jusqu'à présent";
    Forecast => "Forecast for the month", "Prévision pour le mois";
    CreditLeft => "Credit left", "Crédit restant";
    PrepaidBalance => "Prepaid balance", "Solde prépayé";
    TopUpAmount => "Amount", "Montant";
    TopUp => "Top up by card", "Recharger par carte";
    TopUpText => "Your saved card is charged now; invoices are paid from the balance first.", "Votre carte enregistrée est débitée tout de suite ; les factures sont payées d'abord sur le solde.";
    NoticeToppedUp => "Prepaid balance topped up.", "Solde prépayé rechargé.";
    UsageByResource => "Usage by resource", "Consommation par ressource";
    Market => "Market", "Marché";
    Hours => "Hours", "Heures";
    Amount => "Amount", "Montant";
    NoUsage => "Nothing used this month yet.", "Rien de consommé ce mois-ci.";
    CapNote => "* the flavor's monthly cap is reached: the rest of the month is free.", "* le plafond mensuel du gabarit est atteint : le reste du mois est gratuit.";
    Invoices => "Invoices", "Factures";
    Number => "Number", "Numéro";
    Period => "Period", "Période";
    Total => "Total", "Total";
    Due => "Due", "Dû";
    NoInvoices => "No invoice yet: the first comes after the month ends.", "Pas encore de facture : la première arrive à la fin du mois.";
    CreditNote => "credit note", "avoir";
    Download => "Download", "Télécharger";
    Credits => "Credits", "Crédits";
    Left => "Left", "Restant";
    PaymentMethod => "Payment method", "Moyen de paiement";
    BudgetAlerts => "Budget alerts", "Alertes de budget";
    BudgetAlertsText => "Amounts of this month's cost: crossing one sends a mail to the owners and billing members, and a billing.budget_exceeded webhook, once a month.", "Montants du coût du mois : en franchir un envoie un mail aux propriétaires et membres facturation, et un webhook billing.budget_exceeded, une fois par mois.";
    Amounts => "Amounts", "Montants";
    BudgetSent => "Crossed this month:", "Franchis ce mois-ci :";
    NoCard => "No card saved: invoices are paid by bank transfer.", "Aucune carte enregistrée : les factures se règlent par virement.";
    BankTransferOnly => "Pay each invoice by bank transfer to IBAN EE38 2200 2210 2014 5685 with its number as the reference.", "Réglez chaque facture par virement sur l'IBAN EE38 2200 2210 2014 5685 avec son numéro en référence.";
    CardNumber => "Card number", "Numéro de carte";
    SaveCard => "Save the card", "Enregistrer la carte";
    TestCards => "Test mode: 4242 4242 4242 4242 pays; 4000 0000 0000 0341 is saved but declined when charged; 4000 0000 0000 0002 is declined.", "Mode test : 4242 4242 4242 4242 paie ; 4000 0000 0000 0341 est enregistrée mais refusée au paiement ; 4000 0000 0000 0002 est refusée.";
    LiveCardsLater => "Cards are entered in Stripe's own form, which this cluster is not set up to show (no publishable key): pay by bank transfer meanwhile.", "Les cartes se saisissent dans le formulaire de Stripe, que ce cluster n'est pas configuré pour afficher (pas de clé publique) : réglez par virement en attendant.";
    CardFormText => "The card is entered in Stripe's form: its number goes to Stripe, never to VMCloud.", "La carte se saisit dans le formulaire de Stripe : son numéro va chez Stripe, jamais chez VMCloud.";
    CardFormUnavailable => "Stripe's card form did not load (blocked, or offline): reload the page, or pay by bank transfer.", "Le formulaire de carte de Stripe ne s'est pas chargé (bloqué, ou hors ligne) : rechargez la page, ou réglez par virement.";
    ReplaceCard => "Replace the card", "Remplacer la carte";
    Play => "Play", "Jouer";
    NoHousehold => "You belong to no gaming household: sign up as a household to play.", "Vous n'appartenez à aucun foyer de jeu : inscrivez-vous comme foyer pour jouer.";
    WhoPlays => "Who is playing?", "Qui joue ?";
    Kid => "kid", "enfant";
    Today => "today", "aujourd'hui";
    NoProfiles => "No profile yet: add one below.", "Aucun profil : ajoutez-en un ci-dessous.";
    AddProfile => "Add a profile", "Ajouter un profil";
    BirthYearKid => "Birth year (a kid)", "Année de naissance (enfant)";
    MinutesADay => "Minutes a day (a kid)", "Minutes par jour (enfant)";
    ProfilesText => "Six profiles at most. A kid plays titles up to their age's PEGI rating, for their minutes a day.", "Six profils au plus. Un enfant joue aux titres jusqu'à la classification PEGI de son âge, pendant ses minutes par jour.";
    ParentalPin => "Parental PIN", "Code parental";
    GamingPlan => "Plan", "Forfait";
    FreePlan => "free plan", "forfait gratuit";
    NoGamingPlan => "The free plan: a few hours a month, one-hour sessions, the standard queue.", "Le forfait gratuit : quelques heures par mois, des sessions d'une heure, la file standard.";
    CurrentPlan => "Your plan", "Votre forfait";
    SetPin => "Set the PIN", "Définir le code";
    PinIsSet => "A parental PIN is set: it unlocks a title for a kid's next session.", "Un code parental est défini : il débloque un titre pour la prochaine session d'un enfant.";
    PinNotSet => "No parental PIN yet: set one to unlock titles for a kid.", "Pas encore de code parental : définissez-en un pour débloquer des titres pour un enfant.";
    HoursLeft => "Hours left this month", "Heures restantes ce mois-ci";
    PlayedThisMonth => "Played this month", "Joué ce mois-ci";
    Library => "Library", "Bibliothèque";
    PlayNow => "Play", "Jouer";
    Unlock => "Unlock", "Débloquer";
    UnlockedOnce => "Unlocked by a parent for the next session.", "Débloqué par un parent pour la prochaine session.";
    QueuePosition => "Place in the queue:", "Place dans la file :";
    ExpectedStart => "Expected to start at", "Début prévu à";
    EndsBy => "Ends at the latest at", "Se termine au plus tard à";
    EndSession => "End the session", "Terminer la session";
    Connect => "Connect", "Se connecter";
    Requests => "Asked by the kids", "Demandes des enfants";
    AsksFor => "asks for", "demande";
    Approve => "Approve", "Accepter";
    Decline => "Decline", "Refuser";
    AskAParent => "Ask a parent", "Demander à un parent";
    NoticeAsked => "Asked: a parent will answer on the household's page.", "Demandé : un parent répondra sur la page du foyer.";
    StreamHost => "Streaming host:", "Hôte de streaming :";
    SharePlay => "Share-Play", "Share-Play";
    StatusPage => "VMCloud status", "État de VMCloud";
    StatusLink => "Status", "État";
    Fleet => "Fleet", "Flotte";
    Lagging => "replicas behind or unreachable:", "réplicas en retard ou injoignables :";
    Term => "term", "mandat";
    Leader => "leader", "leader";
    NoLeader => "no leader", "aucun leader";
    Voters => "voters", "votants";
    Silent => "silent", "muet";
    Tension => "tension", "tension";
    Held => "held", "réservé";
    Waiting => "Waiting", "En attente";
    Longest => "longest", "la plus longue";
    Search => "Search", "Rechercher";
    Showing => "Showing", "Affichés";
    Workloads => "Workloads", "Charges";
    Connected => "agent connected", "agent connecté";
    NotConnected => "agent not connected", "agent non connecté";
    Deadline => "Deadline", "Échéance";
    Affected => "Who is affected", "Qui est touché";
    Customers => "customers", "clients";
    Households => "households", "foyers";
    GameSessions => "game sessions", "sessions de jeu";
    Actions => "Actions", "Actions";
    HostEvents => "Events", "Événements";
    Support => "Support", "Assistance";
    PartnerConsole => "Partner console", "Console partenaire";
    PartnerCustomers => "Customers", "Clients";
    PartnerCustomersText => "The organisations you serve: made here (their owner is invited by mail) or signed up on your portal. VMCloud's support sees one only while it opens access.", "Les organisations que vous servez : créées ici (leur propriétaire est invité par e-mail) ou inscrites sur votre portail. L'assistance VMCloud n'en voit une que si elle lui ouvre l'accès.";
    NewCustomer => "New customer", "Nouveau client";
    OwnerEmail => "Owner's email", "E-mail du propriétaire";
    CustomerCreated => "Customer created; its owner was invited by mail.", "Client créé ; son propriétaire a été invité par e-mail.";
    Invited => "invited", "invité";
    YourPops => "Your POPs", "Vos POP";
    YourPopsText => "Your sites' hosts, GPUs and game sessions — none of VMCloud's datacenters or another partner's.", "Les hôtes, GPU et sessions de jeu de vos sites — ni les datacenters de VMCloud ni ceux d'un autre partenaire.";
    Domains => "Domains", "Domaines";
    Sites => "Licensed sites", "Sites sous licence";
    SitesText => "Schools and libraries: a launch by one of your customers from a site's addresses takes one of its seats while the session lives; when all are taken the next launch there is refused.", "Écoles et médiathèques : un lancement par l'un de vos clients depuis les adresses d'un site prend l'une de ses places tant que la session dure ; quand toutes sont prises, le lancement suivant y est refusé.";
    Ranges => "Address ranges", "Plages d'adresses";
    Seats => "Seats in use", "Places occupées";
    ThisMonth => "This month", "Ce mois-ci";
    ActiveUsers => "Active users", "Utilisateurs actifs";
    CustomersNet => "Your customers' invoiced net", "Facturé HT à vos clients";
    LicenceFees => "Licence fees", "Redevances de licence";
    YourShare => "Your share", "Votre part";
    Balance => "Balance (above 0: VMCloud pays you)", "Solde (positif : VMCloud vous le verse)";
    DownloadCsv => "Download as CSV", "Télécharger en CSV";
    HostStateChanged => "The host's state changed: the scheduler acts on it now.", "L'état de l'hôte a changé : l'ordonnanceur en tient compte dès maintenant.";
    NoPartner => "You are not on a partner's staff.", "Vous ne faites partie de l'équipe d'aucun partenaire.";
    HostEventsText => "The host's last 20 changes in the audit trail: its state and who changed it, GPU health, lost workloads.", "Les 20 derniers changements de l'hôte dans le journal d'audit : son état et qui l'a changé, la santé des GPU, les charges perdues.";
    Cordon => "Cordon", "Isoler";
    Drain => "Drain", "Vider";
    Maintenance => "Maintenance", "Maintenance";
    Uncordon => "Back to ready", "Remettre en service";
    Model => "Model", "Modèle";
    Kind => "Kind", "Type";
    AllOperational => "All systems operational", "Tous les services fonctionnent";
    StOperational => "Operational", "Opérationnel";
    StMaintenance => "Maintenance", "Maintenance";
    StDegraded => "Degraded", "Dégradé";
    StPartialOutage => "Partial outage", "Panne partielle";
    StMajorOutage => "Major outage", "Panne majeure";
    SvcApi => "API", "API";
    SvcConsole => "Console", "Console";
    SvcCompute => "Compute", "Calcul";
    SvcGpu => "GPU", "GPU";
    SvcGaming => "Cloud gaming", "Cloud gaming";
    SvcBilling => "Billing", "Facturation";
    ActiveIncidents => "Incidents and maintenance under way", "Incidents et maintenances en cours";
    NoIncidents => "Nothing under way.", "Rien en cours.";
    NothingRunsHere => "Nothing runs on this host.", "Rien ne tourne sur cet hôte.";
    ScheduledMaintenance => "Scheduled maintenance", "Maintenances prévues";
    PastIncidents => "The last 90 days", "Les 90 derniers jours";
    NoPastIncidents => "No incident in the last 90 days.", "Aucun incident ces 90 derniers jours.";
    AllServices => "all services", "tous les services";
    UpdatedAt => "Updated", "Mis à jour";
    HourPacks => "Hour packs", "Packs d'heures";
    HourPacksText => "More hours for this month, at once; what is left at the month's end carries over like the plan's. Billed once on the next invoice.", "Des heures en plus pour ce mois, tout de suite ; ce qui reste à la fin du mois est reporté comme celles du forfait. Facturé une fois sur la prochaine facture.";
    BuyPack => "Buy", "Acheter";
    FromPacks => "including from hour packs:", "dont packs d'heures :";
    NoticePackBought => "Hours added: they count this month.", "Heures ajoutées : elles comptent dès ce mois-ci.";
    InviteFriend => "Invite a friend", "Inviter un ami";
    SharePlayText => "A friend joins your session on the same GPU for up to 60 minutes with this code. It lets one friend in, once, until", "Un ami rejoint votre session sur le même GPU pendant 60 minutes au plus avec ce code. Il laisse entrer un ami, une fois, jusqu'à";
    ShareLink => "Or send this link:", "Ou envoyez ce lien :";
    InviteOpen => "An invite is open until", "Une invitation est ouverte jusqu'à";
    PlaysAlong => "plays along until", "joue avec vous jusqu'à";
    EndSharePlay => "End Share-Play", "Arrêter le Share-Play";
    JoinFriend => "Join a friend", "Rejoindre un ami";
    JoinText => "Type the code a friend gave you to play along in their session, on their GPU, for up to 60 minutes.", "Saisissez le code qu'un ami vous a donné pour jouer dans sa session, sur son GPU, pendant 60 minutes au plus.";
    ShareCode => "Code", "Code";
    PlayAs => "Play as", "Jouer en tant que";
    Join => "Join", "Rejoindre";
    PlayingAlong => "Playing along with friends", "En jeu chez des amis";
    PlayingWith => "Playing with", "En jeu avec";
    Until => "until", "jusqu'à";
    Leave => "Leave", "Quitter";
    NoticeShareEnded => "Share-Play ended: your session goes on.", "Share-Play terminé : votre session continue.";
    NoticeLeft => "You left your friend's session.", "Vous avez quitté la session de votre ami.";
    StreamToken => "One-time token:", "Jeton à usage unique :";
    StreamTokenText => "Give both to the streaming client: the token works once, until", "Donnez les deux au client de streaming : le jeton sert une fois, jusqu'à";
    StateQueued => "Waiting for a GPU", "En attente d'un GPU";
    StateStarting => "Starting", "Démarrage";
    StateRunning => "Running", "En cours";
    StateEnding => "Ending", "Fin en cours";
    NoEta => "No start time can be told yet: no GPU of this class will be free soon. This page updates itself.", "Aucune heure de début ne peut encore être donnée : aucun GPU de cette classe ne se libère bientôt. Cette page se met à jour toute seule.";
    NoticeUnlocked => "Unlocked for the next session.", "Débloqué pour la prochaine session.";
    Plan => "Plan", "Forfait";
    NoPlan => "No monthly plan: everything is billed by the second as it runs.", "Aucun forfait mensuel : tout est facturé à la seconde.";
    PerMonth => "a month", "par mois";
    PlanEnds => "ends at", "se termine le";
    TakePlan => "Take this plan", "Prendre ce forfait";
    ChangePlan => "Change plan", "Changer de forfait";
    CancelPlan => "Cancel at the end of the month", "Résilier à la fin du mois";
    PlanText => "A plan is billed a month in advance; a change is prorated by the second on the next invoice; a cancellation takes effect at the end of the month, which was paid.", "Un forfait est facturé un mois d'avance ; un changement est calculé au prorata à la seconde sur la facture suivante ; une résiliation prend effet à la fin du mois, qui a été payé.";
    Suspended => "Suspended:", "Suspendue :";
    NoticeCardSaved => "Card saved: open invoices are charged now, and the trial's limits are lifted.", "Carte enregistrée : les factures ouvertes sont débitées, et les limites de l'essai levées.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_the_cookie_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert(
            header::ACCEPT_LANGUAGE,
            "de-DE,fr-FR;q=0.8,en;q=0.5".parse().unwrap(),
        );
        assert_eq!(Lang::of(&h), Lang::Fr);
        h.insert(header::COOKIE, "a=b; vmcloud_lang=en".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
    }

    #[test]
    fn every_message_has_both_languages_and_a_unique_name() {
        let mut names = std::collections::BTreeSet::new();
        for m in Msg::ALL {
            let (en, fr) = m.en_fr();
            assert!(!en.is_empty() && !fr.is_empty(), "{m:?}");
            assert!(names.insert(m.name()), "{m:?} twice");
            assert_eq!(Msg::from_name(m.name()), Some(*m));
        }
    }
}
